-- glidemq_pause: pause (ARGV[1]="1") or resume ("0") claiming for every worker.
-- KEYS[1]  meta key.  ARGV: flag, events max length.
-- Returns: 1.
redis.register_function('glidemq_pause', function(keys, args)
  local P = prefix_of(keys[1])
  if args[1] == '1' then
    redis.call('HSET', keys[1], 'paused', '1')
    emit(P, tonumber(args[2]), 'paused', '')
  else
    redis.call('HDEL', keys[1], 'paused')
    emit(P, tonumber(args[2]), 'resumed', '')
    wake(P, MARKER_CAP)
  end
  return 1
end)
