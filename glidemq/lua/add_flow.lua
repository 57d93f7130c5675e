-- glidemq_add_flow: write the nodes of one flow that live under one root (hash
-- tag), then release the nodes named in the commit list. The client makes one
-- call per root, dependents before their dependencies, and a last commit call
-- (glidemq/engine/flows.py). Every call is idempotent: a node that exists
-- with this flow id is left as it is, so re-running an interrupted add with
-- the same flow id finishes it.
-- KEYS[1]  meta key of a queue of that root (its outbox receives the notices)
-- ARGV[1]  events stream max length (0 = events off)
-- ARGV[2]  flow id
-- ARGV[3]  nodes, msgpack array ("" = none) of arrays
--          {queue, id, name, data (JSON), opts (JSON), delay_ms, priority,
--           lifo (0/1), remove_on_complete spec, remove_on_fail spec,
--           ext (map: group, cost), waits_for (refs), notifies (refs),
--           on_failure ('wait' | 'fail' | 'ignore'), hold (0/1), auto (0/1)}
--          hold: stay in waiting-children (field 'fh') until committed.
--          auto: complete without a handler once the dependencies are done.
-- ARGV[4]  commit, msgpack array ("" = none) of refs "queue/id" held by this flow
-- Returns: { {id, existed (0/1), timestamp_ms, state} * nodes (flat),
--            notices in KEYS[1]'s queue's outbox (relay them) }
-- Errors: GLIDEMQ_FLOW_CONFLICT a node's id exists outside this flow (this
--         call wrote nothing); GLIDEMQ_FLOW_LIMIT more than DEP_CAP edges.
redis.register_function('glidemq_add_flow', function(keys, args)
  local P = prefix_of(keys[1])
  local maxlen = tonumber(args[1])
  local flow = args[2]
  local nodes = {}
  if args[3] ~= '' then nodes = cmsgpack.unpack(args[3]) end
  local commit = {}
  if args[4] ~= '' then commit = cmsgpack.unpack(args[4]) end
  local R = root_of(P)
  local now = now_ms()

  -- Check every node before writing any, so a refused call writes nothing.
  local existed = {}
  for i = 1, math.min(#nodes, BATCH_CAP) do
    local a = nodes[i]
    if not same_root(P, a[1]) then
      return redis.error_reply('GLIDEMQ_FLOW_CONFLICT queue ' .. a[1] .. ' is not under ' .. R)
    end
    if #a[12] > DEP_CAP or #a[13] > DEP_CAP then
      return redis.error_reply('GLIDEMQ_FLOW_LIMIT job ' .. a[2] .. ' has over ' .. DEP_CAP .. ' edges')
    end
    local job = R .. a[1] .. ':job:' .. a[2]
    if redis.call('EXISTS', job) == 1 then
      if redis.call('HGET', job, 'fl') ~= flow then
        return redis.error_reply('GLIDEMQ_FLOW_CONFLICT job ' .. a[1] .. '/' .. a[2] ..
          ' exists and is not part of flow ' .. flow)
      end
      existed[i] = true
    end
  end

  local out = {}
  for i = 1, math.min(#nodes, BATCH_CAP) do
    local a = nodes[i]
    local QP = R .. a[1] .. ':'
    local id = a[2]
    local job = QP .. 'job:' .. id
    if not existed[i] then
      local delay, priority, waits, notifies = a[6], a[7], a[12], a[13]
      redis.call('HSET', job, 'n', a[3], 'd', a[4], 'o', a[5], 'ts', now,
        'dl', delay, 'p', priority, 'atm', 0, 'stc', 0, 'tk', 0,
        'rc', a[9], 'rf', a[10], 'fl', flow, 'dpn', #waits)
      if a[14] ~= 'wait' then redis.call('HSET', job, 'fp', a[14]) end
      if a[16] == 1 then redis.call('HSET', job, 'ac', '1') end
      if #notifies > 0 then redis.call('HSET', job, 'dt', cmsgpack.pack(notifies)) end
      for k = 1, math.min(#waits, DEP_CAP) do redis.call('HSET', job, 'dp:' .. waits[k], '1') end
      if next(a[11]) then ext_added(QP, id, job, a[11], now) end
      local state
      if #waits > 0 or a[15] == 1 then
        if a[15] == 1 then redis.call('HSET', job, 'fh', flow) end
        redis.call('ZADD', QP .. WC, now, id)
        state = WC
      else
        state = schedule(QP, id, delay, priority, a[8] == 1, now)
      end
      redis.call('HSET', job, 's', state)
      if state ~= WC then wake(QP, 1) end
      emit(QP, maxlen, 'added', id, 'name', a[3])
    end
    local f = redis.call('HMGET', job, 'ts', 's')
    out[#out + 1] = id
    out[#out + 1] = existed[i] and 1 or 0
    out[#out + 1] = tonumber(f[1]) or 0
    out[#out + 1] = f[2] or ''
  end

  for i = 1, math.min(#commit, BATCH_CAP) do
    local q, id = split_ref(commit[i])
    if q and same_root(P, q) then
      local QP = R .. q .. ':'
      local job = QP .. 'job:' .. id
      if redis.call('HGET', job, 'fh') == flow then
        redis.call('HDEL', job, 'fh')
        local f = redis.call('HMGET', job, 's', 'dpn')
        if f[1] == WC and (tonumber(f[2]) or 0) <= 0 and release(QP, id, job, now) then
          finish_cascade(P, {{QP, id, 'completed', true}}, now)
        end
      end
    end
  end
  return {out, redis.call('LLEN', P .. 'outbox')}
end)
