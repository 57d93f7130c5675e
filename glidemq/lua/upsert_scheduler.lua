-- glidemq_upsert_scheduler: create or update a job scheduler.
-- KEYS[1]  meta key of the queue
-- ARGV[1]  scheduler id
-- ARGV[2]  msgpack map {kind ("every" | "cron"), every (ms; 0 for cron), cron, tz,
--          start (ms, -1 = none), end (ms, -1 = none), limit (0 = none),
--          grace (ms, -1 = none), ticks (cron: upcoming instants in ms,
--          ascending; at most 1024 kept)}
-- ARGV[3]  the job template: one msgpack job spec as for glidemq_add
-- Returns: {next tick ms (-1 = none), revision}
-- An upsert that keeps the timing (kind, every, cron, tz, start) keeps the
-- schedule's position, count and last tick: re-running the same upsert at each
-- deploy neither re-anchors the grid nor fires an extra job. A new timing bumps
-- the revision (pending refills for the old one are discarded) and never runs
-- a tick at or before the last one already run. A new `every` schedule runs
-- its first job at `start`, or at once without one; a start in the past means
-- the first grid slot from now on.
redis.register_function('glidemq_upsert_scheduler', function(keys, args)
  local P = prefix_of(keys[1])
  local sid = args[1]
  local c = cmsgpack.unpack(args[2])
  local key = P .. 'sched:' .. sid
  local now = now_ms()
  local old = redis.call('HMGET', key, 'kind', 'every', 'cron', 'tz', 'start', 'rev', 'count',
    'last', 'next')
  local same = old[1] == c.kind and tonumber(old[2]) == c.every and old[3] == c.cron
    and old[4] == c.tz and tonumber(old[5]) == c.start
  local rev = tonumber(old[6]) or 0
  local count = tonumber(old[7]) or 0
  local last = tonumber(old[8]) or 0
  if not same then
    rev = rev + 1
    redis.call('DEL', key .. ':ticks')
    redis.call('SREM', P .. 'sched-refill', sid)
  end
  local nxt
  if c.kind == 'every' then
    nxt = tonumber(old[9])
    if not same or not nxt then
      nxt = now
      if c.start >= 0 then nxt = c.start end
      if nxt < now then nxt = nxt + math.ceil((now - nxt) / c.every) * c.every end
      if nxt <= last then nxt = nxt + (math.floor((last - nxt) / c.every) + 1) * c.every end
    end
  else
    sched_append(P, sid, c.ticks, last)
    nxt = tonumber(redis.call('LINDEX', key .. ':ticks', 0))
  end
  local done = (c.limit > 0 and count >= c.limit) or (c['end'] >= 0 and nxt ~= nil and nxt > c['end'])
    -- The client always sends a batch for cron: none left means no tick before the end.
    or (c.kind == 'cron' and nxt == nil and #c.ticks == 0)
  if done then
    redis.call('SREM', P .. 'sched-refill', sid)
  elseif c.kind == 'cron' and nxt == nil then
    redis.call('SADD', P .. 'sched-refill', sid)
  end
  redis.call('HSET', key, 'kind', c.kind, 'every', c.every, 'cron', c.cron, 'tz', c.tz,
    'start', fmt_ms(c.start), 'end', fmt_ms(c['end']), 'limit', c.limit, 'grace', c.grace,
    'tpl', args[3], 'rev', rev, 'count', count, 'last', fmt_ms(last), 'done', done and '1' or '0')
  if nxt then redis.call('HSET', key, 'next', fmt_ms(nxt)) end
  if done or not nxt then
    redis.call('ZADD', P .. 'schedulers', '+inf', sid)
  else
    redis.call('ZADD', P .. 'schedulers', fmt_ms(nxt), sid)
    -- Idle consumers re-fetch and learn the new wake-up time.
    wake(P, 1)
  end
  if nxt == nil or done then return {-1, rev} end
  return {nxt, rev}
end)
