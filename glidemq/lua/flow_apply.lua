-- glidemq_flow_apply: apply relayed notices to jobs under one root. Idempotent
-- (see _flows.lua): the relay is at-least-once, so a notice may come twice.
-- KEYS[1]  meta key of a queue of the target root (its outbox receives the
--          notices this call produces in turn)
-- ARGV     notices (at most 1000), each msgpack {queue, id, dependency ref,
--          kind ('completed' | 'failed'), value (return value JSON or failed
--          reason), policy of the dependency ('wait' | 'fail' | 'ignore')}
-- Returns: {notices that changed a job, notices in KEYS[1]'s queue's outbox}
-- Notices for queues under another root are skipped (not counted).
redis.register_function('glidemq_flow_apply', function(keys, args)
  local P = prefix_of(keys[1])
  local now = now_ms()
  local changed = 0
  for i = 1, math.min(#args, BATCH_CAP) do
    local n = cmsgpack.unpack(args[i])
    local tq, tid, dref, kind = n[1], n[2], n[3], n[4]
    if same_root(P, tq) then
      local TP = root_of(P) .. tq .. ':'
      local ok, done = apply_notice(TP, tid, dref, kind, n[5], n[6], now)
      if ok then changed = changed + 1 end
      if done then finish_cascade(P, {{TP, tid, done, true}}, now) end
    end
  end
  return {changed, redis.call('LLEN', P .. 'outbox')}
end)
