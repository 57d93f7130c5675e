-- glidemq_obliterate: delete a queue and all its jobs, up to 1000 jobs per
-- call. Refuses while jobs are active unless forced.
-- KEYS[1]  meta key.  ARGV: force (0/1).
-- Returns: jobs left to delete (the client calls again until 0).
-- Error GLIDEMQ_NOT_EMPTY when jobs are active and force is 0.
local JOB_SETS = {'prio', 'parked', 'delayed', 'active', 'completed', 'failed', 'waiting-children'}

redis.register_function('glidemq_obliterate', function(keys, args)
  local P = prefix_of(keys[1])
  if args[1] ~= '1' and redis.call('ZCARD', P .. 'active') > 0 then
    return redis.error_reply('GLIDEMQ_NOT_EMPTY queue has active jobs; pass force=True')
  end
  local budget = BATCH_CAP
  local ids = redis.call('LRANGE', P .. 'wait', -budget, -1)
  if #ids > 0 then
    redis.call('LTRIM', P .. 'wait', 0, -#ids - 1)
    for i = 1, #ids do delete_job(P, ids[i]) end
    budget = budget - #ids
  end
  local groups = {}
  for _, set in ipairs(JOB_SETS) do
    if budget > 0 then
      local z = redis.call('ZRANGE', P .. set, 0, budget - 1)
      if #z > 0 then
        redis.call('ZREM', P .. set, unpack(z))
        for i = 1, #z do
          local g = redis.call('HGET', P .. 'job:' .. z[i], 'g')
          if g then groups[g] = true end
          delete_job(P, z[i])
        end
        budget = budget - #z
      end
    end
  end
  -- Per-group limit state of the groups seen in this batch.
  for g in pairs(groups) do
    redis.call('DEL', P .. 'gpark:' .. g, P .. 'gactive:' .. g, P .. 'grl:' .. g,
      P .. 'gbucket:' .. g)
  end
  local left = redis.call('LLEN', P .. 'wait')
  for _, set in ipairs(JOB_SETS) do
    left = left + redis.call('ZCARD', P .. set)
  end
  if left == 0 then left = schedulers_clear(P) end
  if left == 0 then
    redis.call('DEL', keys[1], P .. 'id', P .. 'pseq', P .. 'events', P .. 'marker',
      P .. 'outbox', P .. 'metrics:completed', P .. 'metrics:completed:idx',
      P .. 'metrics:failed', P .. 'metrics:failed:idx', P .. 'rl', P .. 'gseq', P .. 'glimits',
      P .. 'gtimer')
  end
  return left
end)
