-- glidemq_remove: remove one job that is not active.
-- KEYS[1]  meta key.  ARGV: id, events max length.
-- Returns: 1 removed, 0 not found.  Error GLIDEMQ_JOB_ACTIVE if it is being processed.
redis.register_function('glidemq_remove', function(keys, args)
  local P = prefix_of(keys[1])
  local id = args[1]
  local state = redis.call('HGET', P .. 'job:' .. id, 's')
  if not state then return 0 end
  if state == 'active' then
    return redis.error_reply('GLIDEMQ_JOB_ACTIVE job ' .. id .. ' is being processed')
  end
  if state == 'waiting' then redis.call('LREM', P .. 'wait', 1, id) end
  for _, set in ipairs({'prio', 'delayed', 'completed', 'failed', 'waiting-children', 'parked'}) do
    redis.call('ZREM', P .. set, id)
  end
  delete_job(P, id)
  emit(P, tonumber(args[2]), 'removed', id)
  return 1
end)
