-- glidemq function library: shared prelude.
--
-- The loader (glidemq/engine/library.py) concatenates this prelude and every
-- <function>.lua file of this folder into one library. Everything here is
-- local to the library. Conventions:
--   * KEYS[1] is always the queue's meta key "glidemq:{root}:<name>:meta";
--     every other key is derived from it, so all share the queue's hash tag.
--   * Time comes from the server (TIME), never from the client.
--   * Every loop is bounded by an explicit cap.
--   * Errors are returned as "GLIDEMQ_<CODE> detail" and mapped to typed
--     Python exceptions in glidemq/engine/fcall.py.

local LIBRARY_VERSION = __GLIDEMQ_VERSION__
local LIBRARY_BUILD = '__GLIDEMQ_BUILD__'
local BATCH_CAP = 1000          -- max jobs one call may touch in admin loops
local RECLAIM_CAP = 100         -- max stalled jobs reclaimed per fetch
local PROMOTE_CAP = 1000        -- max delayed jobs promoted per fetch
local MARKER_CAP = 64           -- wake-up markers kept for blocked workers
local PRIO_SHIFT = 4294967296   -- 2^32: score = priority * 2^32 + sequence


local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- "glidemq:{root}:name:meta" -> "glidemq:{root}:name:"
local function prefix_of(meta_key)
  return string.sub(meta_key, 1, -5)
end

-- "glidemq:{root}:name:" -> "glidemq:{root}:"
local function root_of(prefix)
  return string.match(prefix, '^(glidemq:{[^}]*}:)')
end

local function queue_name_of(prefix)
  return string.match(prefix, '^glidemq:{[^}]*}:(.*):$')
end

local function emit(P, maxlen, event, id, k1, v1, k2, v2)
  if maxlen <= 0 then return end
  if k2 then
    redis.call('XADD', P .. 'events', 'MAXLEN', '~', maxlen, '*', 'event', event, 'jobId', id, k1, v1, k2, v2)
  elseif k1 then
    redis.call('XADD', P .. 'events', 'MAXLEN', '~', maxlen, '*', 'event', event, 'jobId', id, k1, v1)
  else
    redis.call('XADD', P .. 'events', 'MAXLEN', '~', maxlen, '*', 'event', event, 'jobId', id)
  end
end

-- Wake blocked workers: one marker per runnable job, capped.
local function wake(P, n)
  if n <= 0 then return end
  if n > MARKER_CAP then n = MARKER_CAP end
  local args = {}
  for i = 1, n do args[i] = '1' end
  redis.call('LPUSH', P .. 'marker', unpack(args))
  redis.call('LTRIM', P .. 'marker', 0, MARKER_CAP - 1)
end

-- Put a job where a worker will claim it: priority set, or wait list.
-- `front` puts it at the head (runs next): LIFO adds and released jobs.
local function enqueue(P, id, priority, front)
  if priority > 0 then
    local seq = redis.call('INCR', P .. 'pseq') % PRIO_SHIFT
    redis.call('ZADD', P .. 'prio', priority * PRIO_SHIFT + seq, id)
    return 'prioritized'
  end
  if front then
    redis.call('RPUSH', P .. 'wait', id)
  else
    redis.call('LPUSH', P .. 'wait', id)
  end
  return 'waiting'
end

-- Runnable after `delay` ms: the delayed set, or enqueued now when delay is 0.
-- Returns the state to store in the job hash.
local function schedule(P, id, delay, priority, front, now)
  if delay > 0 then
    redis.call('ZADD', P .. 'delayed', now + delay, id)
    return 'delayed'
  end
  return enqueue(P, id, priority, front)
end

local function delete_job(P, id)
  redis.call('DEL', P .. 'job:' .. id, P .. 'log:' .. id)
end

-- Retention spec "count:age_ms" ("" = keep everything, "0:-1" = remove now).
-- Returns true when the job was removed instead of being kept in `set`.
local function retain(P, set, spec, now, id)
  if spec == nil or spec == false or spec == '' then
    redis.call('ZADD', P .. set, now, id)
    return false
  end
  local sep = string.find(spec, ':', 1, true)
  local count = tonumber(string.sub(spec, 1, sep - 1))
  local age = tonumber(string.sub(spec, sep + 1))
  if count == 0 then
    delete_job(P, id)
    return true
  end
  redis.call('ZADD', P .. set, now, id)
  if count > 0 then
    local excess = redis.call('ZCARD', P .. set) - count
    if excess > 0 then
      if excess > BATCH_CAP then excess = BATCH_CAP end
      local old = redis.call('ZRANGE', P .. set, 0, excess - 1)
      for i = 1, #old do delete_job(P, old[i]) end
      redis.call('ZREMRANGEBYRANK', P .. set, 0, excess - 1)
    end
  end
  if age >= 0 then
    local old = redis.call('ZRANGEBYSCORE', P .. set, '-inf', now - age, 'LIMIT', 0, BATCH_CAP)
    for i = 1, #old do delete_job(P, old[i]) end
    if #old > 0 then redis.call('ZREM', P .. set, unpack(old)) end
  end
  return false
end

-- Copy a terminally failed job into the dead-letter queue (same hash tag,
-- so the move is atomic on one shard). Returns the new job's id.
local function dead_letter(P, dlq, id, job, reason, now, maxlen)
  local DP = root_of(P) .. dlq .. ':'
  local nid = tostring(redis.call('INCR', DP .. 'id'))
  local f = redis.call('HMGET', job, 'n', 'd', 'o', 'atm')
  redis.call('HSET', DP .. 'job:' .. nid, 'n', f[1] or '', 'd', f[2] or 'null', 'o', f[3] or '{}',
    'ts', now, 'dl', 0, 'p', 0, 'atm', 0, 'stc', 0, 'tk', 0, 's', 'waiting',
    'oq', queue_name_of(P), 'oid', id, 'oatm', f[4] or 0, 'fr', reason)
  redis.call('LPUSH', DP .. 'wait', nid)
  wake(DP, 1)
  emit(DP, maxlen, 'added', nid, 'name', f[1] or '')
  return nid
end

-- Hooks defined by the feature preludes (_flows.lua, _metrics.lua, ...):
-- declared here so prelude functions can call them.
local flow_finished_hook, metrics_hook

-- Terminal failure: failed set (with retention) or dead-letter queue.
local function fail_terminal(P, id, job, reason, stack, now, maxlen, dlq, rf)
  redis.call('HSET', job, 's', 'failed', 'fr', reason, 'st', stack, 'fon', now)
  if dlq ~= '' then
    local nid = dead_letter(P, dlq, id, job, reason, now, maxlen)
    redis.call('HSET', job, 'dlq', dlq .. ':' .. nid)
  end
  emit(P, maxlen, 'failed', id, 'failedReason', reason)
  metrics_hook(P, 'failed', job, now)
  flow_finished_hook(P, id, job, 'failed', now)
  retain(P, 'failed', rf, now, id)
end
