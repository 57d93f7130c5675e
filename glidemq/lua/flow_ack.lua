-- glidemq_flow_ack: remove relayed notices from a queue's outbox, after the
-- relay applied them (a relay that dies before this call re-applies them,
-- which changes nothing).
-- KEYS[1]  meta key of the queue whose outbox held the notices
-- ARGV     the notices, byte for byte as read (at most 1000)
-- Returns: notices left in the outbox.
redis.register_function('glidemq_flow_ack', function(keys, args)
  local P = prefix_of(keys[1])
  for i = 1, math.min(#args, BATCH_CAP) do
    redis.call('LREM', P .. 'outbox', 1, args[i])
  end
  return redis.call('LLEN', P .. 'outbox')
end)
