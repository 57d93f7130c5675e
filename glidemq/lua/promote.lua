-- glidemq_promote: make a delayed job runnable now.
-- KEYS[1]  meta key.  ARGV: id.
-- Returns: 1.  Errors GLIDEMQ_NOT_FOUND, GLIDEMQ_BAD_STATE (not delayed).
redis.register_function('glidemq_promote', function(keys, args)
  local P = prefix_of(keys[1])
  local job = P .. 'job:' .. args[1]
  local f = redis.call('HMGET', job, 's', 'p')
  if not f[1] then return redis.error_reply('GLIDEMQ_NOT_FOUND job ' .. args[1]) end
  if redis.call('ZREM', P .. 'delayed', args[1]) == 0 then
    return redis.error_reply('GLIDEMQ_BAD_STATE job ' .. args[1] .. ' is ' .. f[1] .. ', not delayed')
  end
  redis.call('HSET', job, 's', enqueue(P, args[1], tonumber(f[2]) or 0, false))
  wake(P, 1)
  return 1
end)
