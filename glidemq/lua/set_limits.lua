-- glidemq_set_limits: change a queue's limits or metrics retention (see _limits.lua).
-- KEYS[1]  meta key of the queue
-- ARGV[1]  what:
--   'rate'         ARGV[2] max jobs (0 = remove), ARGV[3] window ms: queue-wide sliding window
--   'concurrency'  ARGV[2] max active jobs across all consumers (0 = off)
--   'group'        ARGV[2] group ("" = default of every group without its own),
--                  ARGV[3] "conc:rate_max:rate_ms:bucket_cap:refill_per_s" ("" = remove)
--   'metrics'      ARGV[2] retention ms of the per-minute metrics
-- Returns: 1.  Error GLIDEMQ_BAD_ARG for an unknown `what`.
-- Loosening a limit wakes idle consumers; a changed group also gets its
-- parked jobs a turn on the next fetch.
redis.register_function('glidemq_set_limits', function(keys, args)
  local P = prefix_of(keys[1])
  local what = args[1]
  if what == 'rate' then
    if tonumber(args[2]) > 0 then
      redis.call('HSET', keys[1], 'rl_max', args[2], 'rl_dur', args[3])
    else
      redis.call('HDEL', keys[1], 'rl_max', 'rl_dur')
      redis.call('DEL', P .. 'rl')
    end
  elseif what == 'concurrency' then
    if tonumber(args[2]) > 0 then
      redis.call('HSET', keys[1], 'gc', args[2])
    else
      redis.call('HDEL', keys[1], 'gc')
    end
  elseif what == 'group' then
    if args[3] ~= '' then
      redis.call('HSET', P .. 'glimits', args[2], args[3])
    else
      redis.call('HDEL', P .. 'glimits', args[2])
    end
    if args[2] ~= '' then redis.call('ZADD', P .. 'gtimer', 0, args[2]) end
  elseif what == 'metrics' then
    redis.call('HSET', keys[1], 'mret', args[2])
  else
    return redis.error_reply('GLIDEMQ_BAD_ARG unknown limit ' .. tostring(what))
  end
  wake(P, 1)
  return 1
end)
