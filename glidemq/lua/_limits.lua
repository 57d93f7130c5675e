-- Claim gates: global concurrency, the queue's rate limit, and per-group
-- limits (concurrency, sliding-window rate, token bucket with per-job cost).
-- Hooks: claim_budget, claim_gate, left_active, limits_wake_ms (glidemq_fetch),
-- ext_added (glidemq_add). Configuration is written by glidemq_set_limits.
--
-- Keys (all derived from P, so they share the queue's hash tag):
--   meta         fields gc (global concurrency; absent = off), rl_max and
--                rl_dur (ms) of the queue rate limit
--   rl           zset  queue rate log: member "<id>:<token>", score claim ms
--   gseq         string  numbers group jobs at add: their FIFO order when parked
--   glimits      hash  group -> "conc:rate_max:rate_ms:bucket_cap:refill_per_s";
--                field "" is the default of every group without its own entry
--   gactive:<g>  set   the group's active ids. SCARD is its concurrency: a set,
--                not a counter, so a double finish cannot skew it (glide-mq #217)
--   grl:<g>      zset  the group's rate log (like rl); PEXPIREs after a window
--   gbucket:<g>  hash  tk (tokens), ts (ms of that level); absent = full
--   gpark:<g>    zset  parked ids by their gseq: popped but held back by a group
--                limit. Parked jobs are not active and hold no lock.
--   parked       zset  every parked id (score: ms parked), for counts and admin
--   gtimer       zset  group -> ms when its rate or bucket admits again
-- A parked job goes back to the head of `wait` (release) when its group frees
-- a slot (left_active), when its timer is due (claim_budget), or when a job
-- of its group is claimed and the group has room (the chain). A job popped
-- while its group is full is parked again at its place (ordered by gseq), so
-- with concurrency 1 a group runs strictly in add order.

local GROUP_DEFAULT_CONC = 1      -- a group without limits runs one job at a time
local GROUP_TIMER_CAP = 100       -- due group timers handled per fetch
local GROUP_RELEASE_SCAN = 100    -- stale parked ids skipped per release
local GC_POLL_MS = 100            -- idle recheck while global concurrency is full
local GROUP_HEAL_SAMPLE = 8       -- members of a full group checked against `active`

-- Per-call cache of the queue's limits, filled by claim_budget and used by
-- claim_gate in the same call (checked by P and now, reloaded otherwise).
local limits_ctx = {}

-- Limits of group g: {conc, rmax, rdur, bcap, brate}.
local function group_limits(P, g)
  local s = redis.call('HMGET', P .. 'glimits', g, '')
  local spec = s[1] or s[2]
  if not spec then return {GROUP_DEFAULT_CONC, 0, 0, 0, 0} end
  local v = {}
  for part in string.gmatch(spec, '[^:]+') do v[#v + 1] = tonumber(part) end
  return v
end

-- Put the first parked job of group g that still exists back at the head of
-- its queue (wait, or prio for a prioritized job). Returns true if one moved.
local function group_release(P, g)
  local pk = P .. 'gpark:' .. g
  for _ = 1, GROUP_RELEASE_SCAN do
    local z = redis.call('ZPOPMIN', pk)
    local id = z[1]
    if not id then return false end
    redis.call('ZREM', P .. 'parked', id)
    local job = P .. 'job:' .. id
    local f = redis.call('HMGET', job, 's', 'p')
    if f[1] == 'waiting' or f[1] == 'prioritized' then
      redis.call('HSET', job, 's', enqueue(P, id, tonumber(f[2]) or 0, true))
      return true
    end
    -- removed while parked: skip it
  end
  return false
end

-- The group's set says it is full: true unless sampled members are no longer
-- active (their jobs were deleted without leaving `active` properly, e.g. a
-- forced obliterate); those free their slots, so a set can never stay stuck.
local function group_full(P, act, conc)
  local sample = redis.call('SRANDMEMBER', act, GROUP_HEAL_SAMPLE)
  local active = P .. 'active'
  for i = 1, #sample do
    if not redis.call('ZSCORE', active, sample[i]) then redis.call('SREM', act, sample[i]) end
  end
  return redis.call('SCARD', act) >= conc
end

local function group_park(P, g, id, seq, now, until_ms)
  redis.call('ZADD', P .. 'gpark:' .. g, tonumber(seq) or 0, id)
  redis.call('ZADD', P .. 'parked', now, id)
  if until_ms then redis.call('ZADD', P .. 'gtimer', 'LT', until_ms, g) end
end

-- How many jobs may be claimed now, at most `want`. Also releases parked
-- jobs whose group timer is due, so this call can claim them.
local function claim_budget(P, want, now)
  local m = redis.call('HMGET', P .. 'meta', 'gc', 'rl_max', 'rl_dur')
  local ctx = {P = P, now = now, rl_dur = nil}
  limits_ctx = ctx
  local gc = tonumber(m[1]) or 0
  if gc > 0 then
    local room = gc - redis.call('ZCARD', P .. 'active')
    if room < want then want = room end
  end
  local rmax = tonumber(m[2]) or 0
  if rmax > 0 then
    local dur = tonumber(m[3])
    redis.call('ZREMRANGEBYSCORE', P .. 'rl', '-inf', now - dur)
    local room = rmax - redis.call('ZCARD', P .. 'rl')
    if room < want then want = room end
    ctx.rl_dur = dur
  end
  if want > 0 then
    local due = redis.call('ZRANGEBYSCORE', P .. 'gtimer', '-inf', now, 'LIMIT', 0, GROUP_TIMER_CAP)
    for i = 1, #due do
      redis.call('ZREM', P .. 'gtimer', due[i])
      group_release(P, due[i])
    end
  end
  if want < 0 then want = 0 end
  return want
end

-- Called for each popped job before it becomes active. Returns true to claim
-- it; false when the gate parked it (gpark) or failed it (cost > capacity).
-- `pre` is the claim's HMGET (fields 7..10: g, cs, gs, tk), read once by the caller.
local function claim_gate(P, id, job, now, pre)
  local g0 = pre[7]
  if not g0 and limits_ctx.P == P and limits_ctx.now == now and not limits_ctx.rl_dur then
    return true  -- no group and no queue rate limit: nothing to gate or log
  end
  local f = {pre[7], pre[8], pre[9], tostring((tonumber(pre[10]) or 0) + 1)}
  local ctx = limits_ctx
  if ctx.P ~= P or ctx.now ~= now then
    claim_budget(P, 0, now)
    ctx = limits_ctx
  end
  local member = id .. ':' .. (f[4] or '0')
  local g = f[1]
  if g then
    local lim = group_limits(P, g)
    local conc, rmax, rdur, bcap, brate = lim[1], lim[2], lim[3], lim[4], lim[5]
    local act = P .. 'gactive:' .. g
    if conc > 0 and redis.call('SCARD', act) >= conc and group_full(P, act, conc) then
      group_park(P, g, id, f[3], now, nil)
      return false
    end
    local grl = P .. 'grl:' .. g
    if rmax > 0 then
      redis.call('ZREMRANGEBYSCORE', grl, '-inf', now - rdur)
      if redis.call('ZCARD', grl) >= rmax then
        local oldest = redis.call('ZRANGE', grl, 0, 0, 'WITHSCORES')
        group_park(P, g, id, f[3], now, tonumber(oldest[2]) + rdur)
        return false
      end
    end
    if bcap > 0 then
      local cost = tonumber(f[2]) or 1
      if cost > bcap then
        fail_terminal(P, id, job, 'cost ' .. cost .. ' exceeds the token bucket capacity ' ..
          bcap .. ' of group ' .. g, '', now, 0, '', redis.call('HGET', job, 'rf'))
        return false
      end
      local bk = P .. 'gbucket:' .. g
      local b = redis.call('HMGET', bk, 'tk', 'ts')
      local tokens = bcap
      if b[1] then
        tokens = tonumber(b[1]) + (now - tonumber(b[2])) * brate / 1000
        if tokens > bcap then tokens = bcap end
      end
      if tokens < cost then
        group_park(P, g, id, f[3], now, now + math.ceil((cost - tokens) * 1000 / brate))
        return false
      end
      tokens = tokens - cost
      redis.call('HSET', bk, 'tk', tostring(tokens), 'ts', now)
      -- Full again after this long: then an absent bucket means the same.
      redis.call('PEXPIRE', bk, math.ceil((bcap - tokens) * 1000 / brate) + 1000)
    end
    redis.call('SADD', act, id)
    if rmax > 0 then
      redis.call('ZADD', grl, now, member)
      redis.call('PEXPIRE', grl, rdur)
    end
    -- The chain: the group may take more, so its next parked job gets a turn.
    if (conc == 0 or redis.call('SCARD', act) < conc) and
        redis.call('EXISTS', P .. 'gpark:' .. g) == 1 then
      group_release(P, g)
    end
  end
  if ctx.rl_dur then
    redis.call('ZADD', P .. 'rl', now, member)
    redis.call('PEXPIRE', P .. 'rl', ctx.rl_dur)
  end
  return true
end

-- Called whenever a job leaves `active` (completed, failed, retried,
-- deferred, released, reclaimed as stalled). SREM answers whether the job
-- really held a group slot, so a second call for one claim changes nothing.
-- `g` is the job's group when the caller already read it (false = none).
local function left_active(P, id, job, now, g)
  if g == nil then g = redis.call('HGET', job, 'g') end
  if g and redis.call('SREM', P .. 'gactive:' .. g, id) == 1 and
      redis.call('EXISTS', P .. 'gpark:' .. g) == 1 then
    group_release(P, g)
  end
end

-- Milliseconds until a limit lets more jobs through, or nil.
local function limits_wake_ms(P, now)
  local m = redis.call('HMGET', P .. 'meta', 'gc', 'rl_max', 'rl_dur', 'paused')
  if m[4] == '1' then return nil end
  local t = nil
  local rmax = tonumber(m[2]) or 0
  if rmax > 0 and redis.call('ZCARD', P .. 'rl') >= rmax then
    local o = redis.call('ZRANGE', P .. 'rl', 0, 0, 'WITHSCORES')
    if o[2] then t = tonumber(o[2]) + tonumber(m[3]) - now end
  end
  local g = redis.call('ZRANGE', P .. 'gtimer', 0, 0, 'WITHSCORES')
  if g[2] and (t == nil or tonumber(g[2]) - now < t) then t = tonumber(g[2]) - now end
  local gc = tonumber(m[1]) or 0
  if gc > 0 and (t == nil or t > GC_POLL_MS) and redis.call('ZCARD', P .. 'active') >= gc and
      redis.call('LLEN', P .. 'wait') + redis.call('ZCARD', P .. 'prio') > 0 then
    -- Slots free up when other consumers finish; their calls claim first, an
    -- idle consumer rechecks soon instead of waiting for an add.
    t = GC_POLL_MS
  end
  if t and t < 0 then t = 0 end
  return t
end

-- Called once per added job after its hash exists: group, its order, cost.
local function ext_added(P, id, job, ext, now)
  local g = ext.group
  if not g then return end
  local seq = redis.call('INCR', P .. 'gseq')
  if ext.cost then
    redis.call('HSET', job, 'g', g, 'gs', seq, 'cs', ext.cost)
  else
    redis.call('HSET', job, 'g', g, 'gs', seq)
  end
end
