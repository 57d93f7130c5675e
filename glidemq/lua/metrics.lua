-- glidemq_metrics: per-minute metrics of one kind (see _metrics.lua).
-- KEYS[1]  meta key of the queue
-- ARGV[1]  kind: 'completed' | 'failed'
-- ARGV[2]  first minute (ms, inclusive)   ARGV[3]  last minute (ms, inclusive)
-- Returns: flat array of {minute ms, count, duration sum ms} per minute that
--          has data, oldest first, at most 10,080 minutes (7 days).
redis.register_function{
  function_name = 'glidemq_metrics',
  callback = function(keys, args)
    local key = prefix_of(keys[1]) .. 'metrics:' .. args[1]
    local minutes = redis.call('ZRANGEBYSCORE', key .. ':idx', args[2], args[3], 'LIMIT', 0, 10080)
    local out = {}
    for i = 1, #minutes do
      local m = minutes[i]
      local f = redis.call('HMGET', key, m .. ':c', m .. ':d')
      out[#out + 1] = tonumber(m)
      out[#out + 1] = tonumber(f[1]) or 0
      out[#out + 1] = tonumber(f[2]) or 0
    end
    return out
  end,
  flags = {'no-writes'},
}
