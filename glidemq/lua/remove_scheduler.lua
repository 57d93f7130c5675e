-- glidemq_remove_scheduler: delete a job scheduler; no further tick runs.
-- KEYS[1]  meta key of the queue
-- ARGV[1]  scheduler id
-- Returns: 1 if it existed, else 0. Jobs it already created are kept.
redis.register_function('glidemq_remove_scheduler', function(keys, args)
  local P = prefix_of(keys[1])
  local sid = args[1]
  local key = P .. 'sched:' .. sid
  local existed = redis.call('DEL', key)
  redis.call('DEL', key .. ':ticks')
  redis.call('ZREM', P .. 'schedulers', sid)
  redis.call('SREM', P .. 'sched-refill', sid)
  return existed
end)
