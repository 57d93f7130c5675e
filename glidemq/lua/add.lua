-- glidemq_add: add one or more jobs to a queue in one call (add and add_bulk).
-- KEYS[1]  meta key of the queue
-- ARGV[1]  events stream max length (0 = events off)
-- ARGV[2]  jobs, msgpack array of N arrays
--          {id ("" = next counter value), name, data (JSON), opts (JSON),
--           delay_ms, priority, lifo (0/1), remove_on_complete spec,
--           remove_on_fail spec (specs: "" keep, "count:age_ms"),
--           ext: nil or a map of feature options (dedup, group, cost, deps,
--           parent) read by the hooks in _dedup.lua, _limits.lua, _flows.lua}
-- Returns: flat array of N triples {id, existed, timestamp_ms}: existed is 0
--          (added), 1 (custom id already existed) or 2 (deduplicated: the id
--          is the existing job's). Nothing is written for 1 and 2.
redis.register_function('glidemq_add', function(keys, args)
  local P = prefix_of(keys[1])
  local maxlen = tonumber(args[1])
  local specs = cmsgpack.unpack(args[2])
  local now = now_ms()
  local out = {}
  local runnable = 0
  for i = 1, #specs do
    local a = specs[i]
    local id = a[1]
    local job
    local existed = 0
    if id == '' then
      id = tostring(redis.call('INCR', P .. 'id'))
      job = P .. 'job:' .. id
    else
      job = P .. 'job:' .. id
      if redis.call('EXISTS', job) == 1 then existed = 1 end
    end
    if existed == 1 then
      out[#out + 1] = id
      out[#out + 1] = 1
      out[#out + 1] = tonumber(redis.call('HGET', job, 'ts')) or 0
    else
      local ext = a[10]
      local dup = nil
      if ext then dup = dedup_check(P, ext, now, id, maxlen) end
      if dup then
        out[#out + 1] = dup
        out[#out + 1] = 2
        out[#out + 1] = tonumber(redis.call('HGET', P .. 'job:' .. dup, 'ts')) or 0
      else
        local name, delay, priority = a[2], a[5], a[6]
        redis.call('HSET', job, 'n', name, 'd', a[3], 'o', a[4], 'ts', now,
          'dl', delay, 'p', priority, 'atm', 0, 'stc', 0, 'tk', 0,
          'rc', a[8], 'rf', a[9])
        if ext then ext_added(P, id, job, ext, now) end
        local state = nil
        if ext then state = flow_hold(P, id, job, ext, now) end
        if not state then  -- else it waits for children / dependencies
          state = schedule(P, id, delay, priority, a[7] == 1, now)
        end
        redis.call('HSET', job, 's', state)
        runnable = runnable + 1
        emit(P, maxlen, 'added', id, 'name', name)
        out[#out + 1] = id
        out[#out + 1] = 0
        out[#out + 1] = now
      end
    end
  end
  -- Delayed adds wake workers too, so a blocked worker re-computes its timeout.
  wake(P, runnable)
  return out
end)
