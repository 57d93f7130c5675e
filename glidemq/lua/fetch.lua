-- glidemq_fetch: the hot path. In one call: apply a batch of outcomes,
-- promote due delayed jobs, reclaim stalled jobs, and claim up to N jobs.
-- KEYS[1]  meta key of the queue
-- ARGV[1]  lock duration ms       ARGV[2]  claim count N
-- ARGV[3]  max stalled count      ARGV[4]  events max length (0 = off)
-- ARGV[5]  dead-letter queue name ("" = none; must share the hash tag)
-- ARGV[6]  outcomes, msgpack array ("" = none) of arrays
--          {id, token, kind ("c" completed | "f" failed | "r" released |
--           "d" deferred: back to delayed for retry_delay ms, no attempt used),
--           value (c: return value JSON, f: failed reason), stacktrace,
--           retry delay ms (f only: >= 0 retry after delay, -1 terminal)}.
--          One packed argument instead of 6 per job: client-side argument
--          encoding was the largest cost of a batch.
-- Returns: { {id, token, name, data, opts, attempts_made, timestamp, stalled_count} * claimed (flat),
--            wake_ms (-1 = nothing pending), rejected outcomes (stale token),
--            cross-slot flow notices waiting in the outbox (relay them) }
-- A stale outcome (token mismatch, or the job is no longer active) is
-- counted in meta "stale" and never applied: this is the fencing check.
redis.register_function('glidemq_fetch', function(keys, args)
  local P = prefix_of(keys[1])
  local lock = tonumber(args[1])
  local want = tonumber(args[2])
  local max_stalled = tonumber(args[3])
  local maxlen = tonumber(args[4])
  local dlq = args[5]
  local outcomes = {}
  if args[6] ~= '' then outcomes = cmsgpack.unpack(args[6]) end
  local now = now_ms()
  local active = P .. 'active'
  local rejected = 0

  for i = 1, #outcomes do
    local o = outcomes[i]
    local id, token, kind = o[1], tostring(o[2]), o[3]
    local job = P .. 'job:' .. id
    -- One read for the fencing check and every hook (group, metrics, flows).
    local f = redis.call('HMGET', job, 'tk', 'rc', 'rf', 'p', 'g', 'pon', 'dd', 'dt')
    if f[1] ~= token or not redis.call('ZSCORE', active, id) then
      rejected = rejected + 1
    else
      redis.call('ZREM', active, id)
      left_active(P, id, job, now, f[5])
      if kind == 'c' then
        redis.call('HSET', job, 's', 'completed', 'rv', o[4], 'fon', now)
        emit(P, maxlen, 'completed', id)
        metrics_record(P, 'completed', job, now, f[6], f[7])
        if f[8] then flow_finished(P, id, job, 'completed', now) end
        retain(P, 'completed', f[2], now, id)
      elseif kind == 'f' then
        local reason, stack, delay = o[4], o[5], o[6]
        redis.call('HINCRBY', job, 'atm', 1)
        if delay >= 0 then
          redis.call('HSET', job, 'fr', reason, 'st', stack,
            's', schedule(P, id, delay, tonumber(f[4]) or 0, false, now))
          emit(P, maxlen, 'retrying', id, 'failedReason', reason, 'delay', delay)
        else
          fail_terminal(P, id, job, reason, stack, now, maxlen, dlq, f[3])
        end
      elseif kind == 'd' then
        -- Deferred by the handler (rate limited): back to delayed, no attempt used.
        redis.call('ZADD', P .. 'delayed', now + o[6], id)
        redis.call('HSET', job, 's', 'delayed')
        emit(P, maxlen, 'delayed', id, 'delay', o[6])
      else
        redis.call('HSET', job, 's', enqueue(P, id, tonumber(f[4]) or 0, true))
      end
    end
  end
  if rejected > 0 then redis.call('HINCRBY', keys[1], 'stale', rejected) end

  -- Promote due delayed jobs.
  local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, PROMOTE_CAP)
  if #due > 0 then
    redis.call('ZREM', P .. 'delayed', unpack(due))
    for i = 1, #due do
      local job = P .. 'job:' .. due[i]
      redis.call('HSET', job, 's', enqueue(P, due[i], tonumber(redis.call('HGET', job, 'p')) or 0, false))
    end
  end

  -- Reclaim jobs whose lock expired (their holder died or hung).
  local stalled = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, RECLAIM_CAP)
  for i = 1, #stalled do
    local id = stalled[i]
    local job = P .. 'job:' .. id
    redis.call('ZREM', active, id)
    left_active(P, id, job, now)
    local stc = redis.call('HINCRBY', job, 'stc', 1)
    emit(P, maxlen, 'stalled', id)
    if stc > max_stalled then
      redis.call('HINCRBY', job, 'atm', 1)
      fail_terminal(P, id, job, 'job stalled more than ' .. max_stalled .. ' time(s)', '', now,
        maxlen, dlq, redis.call('HGET', job, 'rf'))
    else
      redis.call('HSET', job, 's', enqueue(P, id, tonumber(redis.call('HGET', job, 'p')) or 0, true))
    end
  end
  local scheduled = schedulers_run(P, now, maxlen)
  if #due + #stalled + scheduled > 0 then wake(P, #due + #stalled + scheduled) end

  -- Claim.
  local jobs = {}
  local claimed = 0
  local asked = want  -- before limits cut it: a limited caller still needs wake_ms
  if want > 0 and redis.call('HGET', keys[1], 'paused') ~= '1' then
    want = claim_budget(P, want, now)
  end
  if want > 0 and redis.call('HGET', keys[1], 'paused') ~= '1' then
    local deadline = now + lock
    local pops = 0
    while claimed < want and pops < want + BATCH_CAP do
      pops = pops + 1
      local id = redis.call('RPOP', P .. 'wait')
      if not id then
        local z = redis.call('ZPOPMIN', P .. 'prio')
        id = z[1]
        if not id then break end
      end
      local job = P .. 'job:' .. id
      -- One read for the claim and the gates: n d o atm ts stc | g cs gs tk.
      local f = redis.pcall('HMGET', job, 'n', 'd', 'o', 'atm', 'ts', 'stc', 'g', 'cs', 'gs', 'tk')
      if f.err then
        -- Not a hash (corrupted key): fail it without touching it.
        redis.call('ZADD', P .. 'failed', now, id)
        emit(P, maxlen, 'failed', id, 'failedReason', 'malformed: job key is not a hash')
      elseif not f[10] then
        -- The hash was deleted under us (every job hash has a token): drop the id.
      elseif not claim_gate(P, id, job, now, f) then
        -- parked by a limit (group concurrency, rate limit): not claimed
      else
        local tk = redis.call('HINCRBY', job, 'tk', 1)
        redis.call('HSET', job, 's', 'active', 'pon', now)
        redis.call('ZADD', active, deadline, id)
        jobs[#jobs + 1] = id
        jobs[#jobs + 1] = tk
        for k = 1, 6 do jobs[#jobs + 1] = f[k] or '' end
        emit(P, maxlen, 'active', id)
        claimed = claimed + 1
      end
    end
  end

  -- When the queue ran dry, tell the caller how long it may sleep.
  local wake_ms = -1
  if claimed < asked then
    local d = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
    local a = redis.call('ZRANGE', active, 0, 0, 'WITHSCORES')
    local t = nil
    if d[2] then t = tonumber(d[2]) end
    if a[2] and (t == nil or tonumber(a[2]) < t) then t = tonumber(a[2]) end
    local lw = limits_wake_ms(P, now)
    if lw and (t == nil or now + lw < t) then t = now + lw end
    local sw = schedulers_wake_ms(P, now)
    if sw and (t == nil or now + sw < t) then t = now + sw end
    if t then
      wake_ms = t - now
      if wake_ms < 0 then wake_ms = 0 end
    end
  end
  return {jobs, wake_ms, rejected, flows_outbox_len(P)}
end)
