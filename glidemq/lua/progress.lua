-- glidemq_progress: store a job's progress and emit a "progress" event.
-- KEYS[1]  meta key.  ARGV: id, token ("" = no fencing check), progress JSON, events max length.
-- Returns: 1, or error GLIDEMQ_NOT_FOUND / GLIDEMQ_STALE.
redis.register_function('glidemq_progress', function(keys, args)
  local P = prefix_of(keys[1])
  local job = P .. 'job:' .. args[1]
  local tk = redis.call('HGET', job, 'tk')
  if not tk then return redis.error_reply('GLIDEMQ_NOT_FOUND job ' .. args[1]) end
  if args[2] ~= '' and tk ~= args[2] then
    return redis.error_reply('GLIDEMQ_STALE job ' .. args[1] .. ' is no longer held by this token')
  end
  redis.call('HSET', job, 'pg', args[3])
  emit(P, tonumber(args[4]), 'progress', args[1], 'data', args[3])
  return 1
end)
