-- Flows and dependencies: hooks called by glidemq_add (flow_hold),
-- glidemq_fetch (flow_finished, flows_outbox_len) and fail_terminal
-- (flow_finished_hook), plus helpers of the glidemq_flow_* functions.
--
-- An edge "W waits for D" lives in the two job hashes, so deleting a job
-- (retention, remove, obliterate) deletes its edges with it:
--   W: 'dp:<D ref>' per pending dependency, 'dpn' = how many are pending,
--      'cv:<D ref>' = D's return value (JSON) once D completed.
--   D: 'dt' = msgpack list of the refs to notify when D finishes, 'fp' = what
--      D's failure does to them: 'wait' (default: keep waiting), 'fail' (fail
--      them), 'ignore' (count D as done).
-- Also 'ac' = '1': the job completes by itself once released (group parents);
-- 'fl' = flow id; 'fh' = flow id while an unfinished flow add holds the job.
-- A ref is "<queue>/<id>". W is updated in the same call when it shares D's
-- root (hash tag). Otherwise a notice goes to the outbox list of the queue
-- whose call produced it and a client relays it (glidemq_flow_apply). Applying
-- a notice first removes 'dp:<D ref>': only a removal that succeeds counts, so
-- a notice applied twice changes nothing (the relay is at-least-once).

local DEP_CAP = 1000        -- max dependencies of one job, and max dependents
local CASCADE_CAP = 1000    -- max dependents one call updates in place; the rest get notices
local FLOW_EVENTS = 10000   -- events cap for moves of jobs the caller did not name
local CAUSE_CAP = 1000      -- chars of a dependency's reason quoted (a chain nests them)
local WC = 'waiting-children'

-- "queue/id" -> queue, id (the id is what follows the last '/').
local function split_ref(ref)
  return string.match(ref, '^(.+)/([^/]+)$')
end

-- True when queue q has the hash tag of prefix P (same slot: keys reachable).
local function same_root(P, q)
  return string.match(q, '^[^.]*') == string.match(P, '^glidemq:{([^}]*)}:')
end

local function push_notice(home, tq, tid, dref, kind, value, policy)
  redis.call('RPUSH', home .. 'outbox', cmsgpack.pack({tq, tid, dref, kind, value, policy}))
end

-- {"<child ref>": value, ...} from the 'cv:' fields of a job hash.
local function children_json(job)
  local h = redis.call('HGETALL', job)
  local parts = {}
  for i = 1, math.min(#h, 2 * (DEP_CAP + 64)), 2 do
    if string.sub(h[i], 1, 3) == 'cv:' then
      parts[#parts + 1] = cjson.encode(string.sub(h[i], 4)) .. ':' .. h[i + 1]
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- A waiting-children job whose dependencies are all done becomes runnable
-- (or completes itself when 'ac'). Returns 'completed' when it completed.
local function release(P, id, job, now)
  redis.call('ZREM', P .. WC, id)
  local f = redis.call('HMGET', job, 'ac', 'dl', 'p')
  if f[1] == '1' then
    redis.call('HSET', job, 's', 'completed', 'rv', children_json(job), 'fon', now)
    redis.call('ZADD', P .. 'completed', now, id)
    emit(P, FLOW_EVENTS, 'completed', id)
    metrics_hook(P, 'completed', job, now)
    return 'completed'
  end
  redis.call('HSET', job, 's', schedule(P, id, tonumber(f[2]) or 0, tonumber(f[3]) or 0, false, now))
  wake(P, 1)
  emit(P, FLOW_EVENTS, 'waiting', id)
  return nil
end

-- Apply "dependency dref of job tid finished" to job tid (TP its queue prefix).
-- Returns changed (bool) and 'completed' / 'failed' when tid itself finished.
local function apply_notice(TP, tid, dref, kind, value, policy, now)
  if kind == 'failed' and policy ~= 'fail' and policy ~= 'ignore' then return false end
  local job = TP .. 'job:' .. tid
  if redis.call('HDEL', job, 'dp:' .. dref) == 0 then return false end
  local n = redis.call('HINCRBY', job, 'dpn', -1)
  local f = redis.call('HMGET', job, 's', 'fh')
  if f[1] ~= WC then return true end
  if kind == 'failed' and policy == 'fail' then
    local reason = 'dependency ' .. dref .. ' failed: ' .. string.sub(value, 1, CAUSE_CAP)
    redis.call('ZREM', TP .. WC, tid)
    redis.call('HSET', job, 's', 'failed', 'fr', reason, 'fon', now)
    redis.call('ZADD', TP .. 'failed', now, tid)
    emit(TP, FLOW_EVENTS, 'failed', tid, 'failedReason', reason)
    metrics_hook(TP, 'failed', job, now)
    return true, 'failed'
  end
  if kind == 'completed' then redis.call('HSET', job, 'cv:' .. dref, value) end
  if n <= 0 and not f[2] then return true, release(TP, tid, job, now) end
  return true
end

-- Notify the dependents of finished jobs. items: {prefix, id, kind, retain}
-- ('retain': apply the job's retention afterwards; the caller did not).
-- Up to CASCADE_CAP dependents under the same root are updated in place, and
-- those that finish in turn (a 'fail' policy, a self-completing parent) join
-- the loop, so it runs at most 1 + CASCADE_CAP times; every other dependent
-- gets a notice in the outbox of `home`, the queue of the call.
local function finish_cascade(home, items, now)
  local budget = CASCADE_CAP
  local i = 0
  while i < #items and i <= CASCADE_CAP do
    i = i + 1
    local w = items[i]
    local WP, wid, kind = w[1], w[2], w[3]
    local job = WP .. 'job:' .. wid
    local f = redis.call('HMGET', job, 'dt', 'rv', 'fr', 'fp', 'rc', 'rf')
    local policy = f[4] or 'wait'
    if f[1] and (kind == 'completed' or policy ~= 'wait') then
      local value = f[3] or ''
      if kind == 'completed' then value = f[2] or 'null' end
      local dref = queue_name_of(WP) .. '/' .. wid
      local targets = cmsgpack.unpack(f[1])
      for t = 1, math.min(#targets, DEP_CAP) do
        local tq, tid = split_ref(targets[t])
        if tq and budget > 0 and same_root(WP, tq) then
          budget = budget - 1
          local TP = root_of(WP) .. tq .. ':'
          local _, done = apply_notice(TP, tid, dref, kind, value, policy, now)
          if done then items[#items + 1] = {TP, tid, done, true} end
        elseif tq then
          push_notice(home, tq, tid, dref, kind, value, policy)
        end
      end
    end
    if w[4] then
      local spec = f[6]
      if kind == 'completed' then spec = f[5] end
      retain(WP, kind, spec, now, wid)
    end
  end
end

-- A job finished for good ('completed' or 'failed'): notify its dependents.
local function flow_finished(P, id, job, kind, now)
  if redis.call('HEXISTS', job, 'dt') == 0 then return end
  finish_cascade(P, {{P, id, kind, false}}, now)
end
flow_finished_hook = flow_finished

-- Make job wref a dependent of job did (DP its queue prefix). Returns nil
-- when wref will be notified once it finishes, else what to apply now:
-- kind ('completed' / 'failed'), value, policy (missing -> failed, 'fail').
local function link(DP, did, wref)
  local djob = DP .. 'job:' .. did
  local f = redis.call('HMGET', djob, 's', 'dt', 'rv', 'fr', 'fp')
  if not f[1] then
    return 'failed', 'it does not exist', 'fail'
  end
  local list = {}
  if f[2] then list = cmsgpack.unpack(f[2]) end
  local known = false
  for i = 1, math.min(#list, DEP_CAP) do
    if list[i] == wref then known = true; break end
  end
  if not known then
    if #list >= DEP_CAP then
      return 'failed', 'it has ' .. DEP_CAP .. ' dependents already (the limit)', 'fail'
    end
    list[#list + 1] = wref
    redis.call('HSET', djob, 'dt', cmsgpack.pack(list))
  end
  if f[1] == 'completed' then return 'completed', f[3] or 'null', f[5] or 'wait' end
  if f[1] == 'failed' then return 'failed', f[4] or '', f[5] or 'wait' end
  return nil
end

-- glidemq_add hook: a job with ext.deps ("id" or "queue/id") waits in
-- waiting-children for those not finished yet. Dependencies under this
-- root are linked here; the client links the others (glidemq_flow_register).
-- Returns 'waiting-children', 'failed' (a dependency failed with policy
-- 'fail', or is missing), or nil (nothing to wait for).
local function flow_hold(P, id, job, ext, now)
  local deps = ext.deps
  if type(deps) ~= 'table' or #deps == 0 then return nil end
  local me = queue_name_of(P) .. '/' .. id
  local pending, reason = 0, nil
  for i = 1, math.min(#deps, DEP_CAP) do
    local ref = deps[i]
    if not string.find(ref, '/', 1, true) then ref = queue_name_of(P) .. '/' .. ref end
    local dq, did = split_ref(ref)
    local kind, value, policy = nil, nil, nil
    if dq and same_root(P, dq) then kind, value, policy = link(root_of(P) .. dq .. ':', did, me) end
    if kind == 'completed' then
      redis.call('HSET', job, 'cv:' .. ref, value)
    elseif kind == 'failed' and policy == 'fail' then
      reason = reason or ('dependency ' .. ref .. ' failed: ' .. string.sub(value, 1, CAUSE_CAP))
    elseif kind == 'failed' and policy == 'ignore' then
      -- counts as done
    elseif redis.call('HSETNX', job, 'dp:' .. ref, '1') == 1 then
      pending = pending + 1
    end
  end
  if reason then
    redis.call('HSET', job, 'fr', reason, 'fon', now)
    redis.call('ZADD', P .. 'failed', now, id)
    return 'failed'
  end
  if pending == 0 then return nil end
  redis.call('HSET', job, 'dpn', pending)
  redis.call('ZADD', P .. WC, now, id)
  return WC
end

-- Number of cross-slot notices waiting in this queue's outbox for the client
-- to relay (see glidemq/engine/deps.py).
local function flows_outbox_len(P)
  return redis.call('LLEN', P .. 'outbox')
end
