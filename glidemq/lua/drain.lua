-- glidemq_drain: remove up to 1000 waiting (parked included)/prioritized (and, with ARGV[1]="1",
-- delayed) jobs per call. Active, completed and failed jobs are untouched.
-- KEYS[1]  meta key.  ARGV: include delayed (0/1).
-- Returns: number of jobs removed by this call (the client calls again until 0).
redis.register_function('glidemq_drain', function(keys, args)
  local P = prefix_of(keys[1])
  local removed = 0
  local ids = redis.call('LRANGE', P .. 'wait', -BATCH_CAP, -1)
  if #ids > 0 then
    redis.call('LTRIM', P .. 'wait', 0, -#ids - 1)
    for i = 1, #ids do delete_job(P, ids[i]) end
    removed = removed + #ids
  end
  for _, set in ipairs(args[1] == '1' and {'parked', 'prio', 'delayed'} or {'parked', 'prio'}) do
    if removed < BATCH_CAP then
      local z = redis.call('ZRANGE', P .. set, 0, BATCH_CAP - removed - 1)
      if #z > 0 then
        redis.call('ZREM', P .. set, unpack(z))
        for i = 1, #z do delete_job(P, z[i]) end
        removed = removed + #z
      end
    end
  end
  return removed
end)
