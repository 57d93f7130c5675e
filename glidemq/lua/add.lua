-- glidemq_add: add one or more jobs to a queue in one call (add and add_bulk).
-- KEYS[1]  meta key of the queue
-- ARGV[1]  events stream max length (0 = events off)
-- ARGV[2]  number of jobs N, then N groups of 9 fields:
--          id ("" = next counter value), name, data (JSON), opts (JSON),
--          delay_ms, priority, lifo (0/1), remove_on_complete spec,
--          remove_on_fail spec (specs: "" keep, "count:age_ms")
-- Returns: flat array of N triples {id, existed (0/1), timestamp_ms}.
--          An existing custom id is returned with existed=1 and nothing is written.
redis.register_function('glidemq_add', function(keys, args)
  local P = prefix_of(keys[1])
  local maxlen = tonumber(args[1])
  local n = tonumber(args[2])
  local now = now_ms()
  local out = {}
  local runnable = 0
  for i = 0, n - 1 do
    local b = 2 + i * 9
    local id = args[b + 1]
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
      local name, delay, priority = args[b + 2], tonumber(args[b + 5]), tonumber(args[b + 6])
      local state
      if delay > 0 then
        redis.call('ZADD', P .. 'delayed', now + delay, id)
        state = 'delayed'
      else
        state = enqueue(P, id, priority, args[b + 7] == '1')
      end
      runnable = runnable + 1
      redis.call('HSET', job, 'n', name, 'd', args[b + 3], 'o', args[b + 4], 'ts', now,
        'dl', delay, 'p', priority, 'atm', 0, 'stc', 0, 'tk', 0, 's', state,
        'rc', args[b + 8], 'rf', args[b + 9])
      emit(P, maxlen, 'added', id, 'name', name)
      out[#out + 1] = id
      out[#out + 1] = 0
      out[#out + 1] = now
    end
  end
  -- Delayed adds wake workers too, so a blocked worker re-computes its timeout.
  wake(P, runnable)
  return out
end)
