-- glidemq_retry_jobs: move up to ARGV[2] (<= 1000) failed or completed jobs
-- back to waiting with a fresh attempt budget.
-- KEYS[1]  meta key.  ARGV: state (failed|completed), count, events max length.
-- Returns: number moved by this call.
redis.register_function('glidemq_retry_jobs', function(keys, args)
  local P = prefix_of(keys[1])
  local set = P .. args[1]
  local n = math.min(tonumber(args[2]), BATCH_CAP)
  local ids = redis.call('ZRANGE', set, 0, n - 1)
  for i = 1, #ids do
    local job = P .. 'job:' .. ids[i]
    redis.call('ZREM', set, ids[i])
    redis.call('HSET', job, 'atm', 0, 'stc', 0, 's', enqueue(P, ids[i], tonumber(redis.call('HGET', job, 'p')) or 0, false))
    redis.call('HDEL', job, 'fr', 'st', 'rv', 'fon', 'dlq')
    emit(P, tonumber(args[3]), 'retried', ids[i])
  end
  wake(P, #ids)
  return #ids
end)
