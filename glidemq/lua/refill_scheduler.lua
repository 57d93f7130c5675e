-- glidemq_refill_scheduler: top up a cron scheduler's batch of upcoming ticks.
-- KEYS[1]  meta key of the queue
-- ARGV[1]  scheduler id
-- ARGV[2]  revision the ticks were computed for (from the scheduler hash)
-- ARGV[3]  msgpack array of tick instants (ms, ascending; at most 1024 kept)
-- Returns: number of ticks appended, or -1 when the scheduler is gone or was
--          re-timed since (the ticks are discarded).
-- Any client may call it at any time: ticks at or before the stored tail or
-- the last tick run are ignored, so concurrent refills cannot duplicate one.
-- An empty batch on an empty list means the schedule has no more ticks
-- (its end passed): the scheduler is finished.
redis.register_function('glidemq_refill_scheduler', function(keys, args)
  local P = prefix_of(keys[1])
  local sid = args[1]
  local key = P .. 'sched:' .. sid
  local s = redis.call('HMGET', key, 'kind', 'rev', 'last', 'done')
  redis.call('SREM', P .. 'sched-refill', sid)
  if s[1] ~= 'cron' or s[2] ~= args[2] then return -1 end
  local list = cmsgpack.unpack(args[3])
  local n = sched_append(P, sid, list, tonumber(s[3]) or 0)
  if s[4] ~= '1' then
    local head = redis.call('LINDEX', key .. ':ticks', 0)
    if head then
      redis.call('ZADD', P .. 'schedulers', head, sid)
      if n > 0 then wake(P, 1) end
    elseif #list == 0 then
      redis.call('HSET', key, 'done', '1')
      redis.call('ZADD', P .. 'schedulers', '+inf', sid)
    end
  end
  return n
end)
