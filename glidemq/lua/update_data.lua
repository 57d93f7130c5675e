-- glidemq_update_data: replace a job's data.
-- KEYS[1]  meta key.  ARGV: id, data JSON.
-- Returns: 1, or error GLIDEMQ_NOT_FOUND.
redis.register_function('glidemq_update_data', function(keys, args)
  local job = prefix_of(keys[1]) .. 'job:' .. args[1]
  if redis.call('EXISTS', job) == 0 then return redis.error_reply('GLIDEMQ_NOT_FOUND job ' .. args[1]) end
  redis.call('HSET', job, 'd', args[2])
  return 1
end)
