-- glidemq_clean: remove up to ARGV[3] (<= 1000) jobs of one state that
-- finished (completed/failed) or were added (waiting/delayed/prioritized)
-- more than ARGV[2] ms ago.
-- KEYS[1]  meta key.  ARGV: state, grace ms, limit.
-- Returns: removed ids.  Error GLIDEMQ_BAD_STATE for active or unknown states.
redis.register_function('glidemq_clean', function(keys, args)
  local P = prefix_of(keys[1])
  local state, cutoff = args[1], now_ms() - tonumber(args[2])
  local limit = math.min(tonumber(args[3]), BATCH_CAP)
  local sets = {completed = 'completed', failed = 'failed', delayed = 'delayed', prioritized = 'prio'}
  local removed = {}
  if sets[state] then
    local candidates = redis.call('ZRANGE', P .. sets[state], 0, BATCH_CAP * 4 - 1)
    for i = 1, #candidates do
      if #removed >= limit then break end
      local id = candidates[i]
      local ts
      if state == 'completed' or state == 'failed' then
        ts = tonumber(redis.call('ZSCORE', P .. sets[state], id))
      else
        ts = tonumber(redis.call('HGET', P .. 'job:' .. id, 'ts')) or 0
      end
      if ts <= cutoff then
        redis.call('ZREM', P .. sets[state], id)
        delete_job(P, id)
        removed[#removed + 1] = id
      end
    end
  elseif state == 'waiting' then
    local ids = redis.call('LRANGE', P .. 'wait', -BATCH_CAP * 4, -1)
    for i = #ids, 1, -1 do
      if #removed >= limit then break end
      local ts = tonumber(redis.call('HGET', P .. 'job:' .. ids[i], 'ts')) or 0
      if ts <= cutoff then
        redis.call('LREM', P .. 'wait', 1, ids[i])
        delete_job(P, ids[i])
        removed[#removed + 1] = ids[i]
      end
    end
  else
    return redis.error_reply('GLIDEMQ_BAD_STATE cannot clean state ' .. state)
  end
  return removed
end)
