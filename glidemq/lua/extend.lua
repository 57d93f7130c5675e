-- glidemq_extend: renew the locks of in-flight jobs in one call.
-- KEYS[1]  meta key.   ARGV[1] lock duration ms, then pairs (id, token).
-- Returns: ids whose lock is no longer held by that token (lost: reclaimed,
--          finished elsewhere, or removed). Their holder must stop caring.
redis.register_function('glidemq_extend', function(keys, args)
  local P = prefix_of(keys[1])
  local deadline = now_ms() + tonumber(args[1])
  local lost = {}
  for i = 2, #args, 2 do
    local id = args[i]
    if redis.call('HGET', P .. 'job:' .. id, 'tk') == args[i + 1] and redis.call('ZSCORE', P .. 'active', id) then
      redis.call('ZADD', P .. 'active', 'XX', deadline, id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost
end)
