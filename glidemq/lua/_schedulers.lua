-- Job schedulers: the tick hooks called by glidemq_fetch, and helpers shared
-- with glidemq_upsert_scheduler / glidemq_refill_scheduler.
--
-- Keys (under the queue prefix P, so they share its hash tag):
--   schedulers        zset  scheduler id -> next tick (server ms); +inf while
--                           dormant (finished, or a cron batch ran dry)
--   sched:<id>        hash  kind ("every"|"cron"), every (ms), cron, tz,
--                           start/end (ms, -1 = none), limit (0 = none),
--                           grace (ms, -1 = none), tpl (msgpack job spec as
--                           for glidemq_add), rev, count, skipped, last
--                           (last tick run, ms), next (every only), done
--   sched:<id>:ticks  list  cron only: upcoming tick instants (ms), ascending,
--                           computed by the client (croniter, tz-aware)
--   sched-refill      set   cron schedulers whose batch runs low; a client
--                           tops them up (glidemq/engine/schedulers.py)
--
-- Ticks run inside the atomic glidemq_fetch, so one tick makes one job no
-- matter how many consumers race. Missed ticks: when several ticks of one
-- scheduler are due, only the newest runs (unless it is later than `grace`);
-- the older ones are skipped and counted. `every` stays on its grid
-- (next = slot + every, never now + every), so it cannot drift.

local SCHED_CAP = 100          -- schedulers ticked per fetch
local TICK_CAP = 256           -- cron ticks consumed per scheduler per fetch
local TICK_LOW = 32            -- ask for a refill below this many stored ticks,
local TICK_SPAN_LOW = 300000   -- or when they reach less than 5 minutes ahead
local APPEND_CAP = 1024        -- ticks stored per upsert or refill

local function fmt_ms(x)
  return string.format('%.0f', x)
end

local function is_inf(score)
  return score == nil or score == false or score == 'inf' or score == '+inf'
end

-- Append client-computed cron ticks beyond both the stored tail and the last
-- tick run: a late or duplicate refill adds nothing twice.
local function sched_append(P, sid, list, last)
  local ticks = P .. 'sched:' .. sid .. ':ticks'
  local floor_at = tonumber(redis.call('LINDEX', ticks, -1)) or 0
  if last > floor_at then floor_at = last end
  local add = {}
  local n = #list
  if n > APPEND_CAP then n = APPEND_CAP end
  for i = 1, n do
    local t = tonumber(list[i])
    if t and t > floor_at then
      add[#add + 1] = fmt_ms(t)
      floor_at = t
    end
  end
  if #add > 0 then redis.call('RPUSH', ticks, unpack(add)) end
  return #add
end

-- Create the job of one tick from the stored template, through the same hooks
-- as glidemq_add. The id is a function of (scheduler, tick), so a tick can
-- never make two jobs, even across re-upserts.
local function sched_create(P, sid, slot, tpl, now, maxlen)
  local id = 'sched-' .. sid .. '-' .. fmt_ms(slot)
  local job = P .. 'job:' .. id
  if redis.call('EXISTS', job) == 1 then return 0 end
  local a = cmsgpack.unpack(tpl)
  local ext = a[10]
  if ext and dedup_check(P, ext, now, id, maxlen) then return 0 end
  redis.call('HSET', job, 'n', a[2], 'd', a[3], 'o', a[4], 'ts', now, 'dl', 0, 'p', a[6],
    'atm', 0, 'stc', 0, 'tk', 0, 'rc', a[8], 'rf', a[9])
  if ext then ext_added(P, id, job, ext, now) end
  local state = nil
  if ext then state = flow_hold(P, id, job, ext, now) end
  if not state then state = enqueue(P, id, tonumber(a[6]) or 0, a[7] == 1) end
  redis.call('HSET', job, 's', state)
  emit(P, maxlen, 'added', id, 'name', a[2], 'scheduler', sid)
  return 1
end

-- Advance one due scheduler. Returns the number of jobs created (0 or 1).
local function sched_tick(P, sid, due_at, now, maxlen)
  local key = P .. 'sched:' .. sid
  local index = P .. 'schedulers'
  local s = redis.call('HMGET', key, 'kind', 'every', 'end', 'limit', 'grace', 'count',
    'last', 'tpl')
  if not s[1] then
    redis.call('ZREM', index, sid)
    return 0
  end
  local stop, limit, grace = tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
  local count, last = tonumber(s[6]) or 0, tonumber(s[7]) or 0
  local slot, skipped, nxt
  if s[1] == 'every' then
    local every = tonumber(s[2])
    local k = math.floor((now - due_at) / every)
    slot = due_at + k * every
    skipped = k
    nxt = slot + every
    redis.call('HSET', key, 'next', fmt_ms(nxt))
  else
    local ticks = key .. ':ticks'
    local head = redis.call('LRANGE', ticks, 0, TICK_CAP - 1)
    local n = 0
    for i = 1, #head do
      if tonumber(head[i]) <= now then n = i else break end
    end
    if n == 0 then
      -- The index was out of step with the list: resynchronise, run nothing.
      if head[1] then redis.call('ZADD', index, head[1], sid) else
        redis.call('ZADD', index, '+inf', sid)
        redis.call('SADD', P .. 'sched-refill', sid)
      end
      return 0
    end
    redis.call('LTRIM', ticks, n, -1)
    slot = tonumber(head[n])
    skipped = n - 1
    nxt = tonumber(redis.call('LINDEX', ticks, 0))
    if nxt and nxt <= now then
      -- More due ticks than one call may consume: skip these, and let the
      -- next fetch find the newest due tick.
      skipped = n
      slot = nil
    end
    local tail = tonumber(redis.call('LINDEX', ticks, -1)) or 0
    if redis.call('LLEN', ticks) < TICK_LOW or tail - now < TICK_SPAN_LOW then
      redis.call('SADD', P .. 'sched-refill', sid)
    end
  end
  if slot and stop >= 0 and slot > stop then slot = nil end
  if slot and grace >= 0 and now - slot > grace then
    skipped = skipped + 1
    slot = nil
  end
  if slot and slot <= last then slot = nil end
  local made = 0
  if slot then
    made = sched_create(P, sid, slot, s[8], now, maxlen)
    count = count + made
    last = slot
  end
  if skipped > 0 then redis.call('HINCRBY', key, 'skipped', skipped) end
  redis.call('HSET', key, 'count', count, 'last', fmt_ms(last))
  local done = (limit > 0 and count >= limit) or (stop >= 0 and nxt ~= nil and nxt > stop)
  if done then
    redis.call('HSET', key, 'done', '1')
    redis.call('ZADD', index, '+inf', sid)
  elseif nxt then
    redis.call('ZADD', index, fmt_ms(nxt), sid)
  else
    redis.call('ZADD', index, '+inf', sid)
  end
  return made
end

-- Create the jobs of every due scheduler tick (exactly once per tick: this
-- runs inside the atomic fetch). Returns the number of jobs created. With no
-- scheduler due it costs one ZRANGEBYSCORE.
local function schedulers_run(P, now, maxlen)
  local due = redis.call('ZRANGEBYSCORE', P .. 'schedulers', '-inf', now, 'WITHSCORES',
    'LIMIT', 0, SCHED_CAP)
  local made = 0
  for i = 1, #due, 2 do
    made = made + sched_tick(P, due[i], tonumber(due[i + 1]), now, maxlen)
  end
  return made
end

-- Milliseconds until the next scheduler tick, or nil.
local function schedulers_wake_ms(P, now)
  local r = redis.call('ZRANGE', P .. 'schedulers', 0, 0, 'WITHSCORES')
  if is_inf(r[2]) then return nil end
  local t = tonumber(r[2])
  if not t then return nil end
  if t < now then return 0 end
  return t - now
end

-- Delete up to BATCH_CAP schedulers and their ticks (glidemq_obliterate), so an
-- obliterated queue stops ticking. Returns how many schedulers are left.
local function schedulers_clear(P)
  local index = P .. 'schedulers'
  local ids = redis.call('ZRANGE', index, 0, BATCH_CAP - 1)
  for i = 1, #ids do
    redis.call('DEL', P .. 'sched:' .. ids[i], P .. 'sched:' .. ids[i] .. ':ticks')
  end
  if #ids > 0 then redis.call('ZREM', index, unpack(ids)) end
  local left = redis.call('ZCARD', index)
  if left == 0 then redis.call('DEL', P .. 'sched-refill') end
  return left
end
