-- glidemq_log: append a line to a job's log (kept to the last ARGV[4] lines).
-- KEYS[1]  meta key.  ARGV: id, token ("" = no check), line, max lines.
-- Returns: number of log lines, or error GLIDEMQ_NOT_FOUND / GLIDEMQ_STALE.
redis.register_function('glidemq_log', function(keys, args)
  local P = prefix_of(keys[1])
  local tk = redis.call('HGET', P .. 'job:' .. args[1], 'tk')
  if not tk then return redis.error_reply('GLIDEMQ_NOT_FOUND job ' .. args[1]) end
  if args[2] ~= '' and tk ~= args[2] then
    return redis.error_reply('GLIDEMQ_STALE job ' .. args[1] .. ' is no longer held by this token')
  end
  local n = redis.call('RPUSH', P .. 'log:' .. args[1], args[3])
  local cap = tonumber(args[4])
  if n > cap then
    redis.call('LTRIM', P .. 'log:' .. args[1], n - cap, -1)
    n = cap
  end
  return n
end)
