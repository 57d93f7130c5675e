-- glidemq_server_time: the server clock in ms, on the queue's own node.
-- KEYS[1]  meta key of the queue (routes the call).  ARGV: none.
-- Returns: integer milliseconds since the epoch. Clients that must compute
-- instants (cron ticks) use it instead of their own clock.
redis.register_function{
  function_name = 'glidemq_server_time',
  callback = function(keys, args) return now_ms() end,
  flags = {'no-writes'},
}
