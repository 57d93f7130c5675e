-- glidemq_counts: job counts by state, read atomically.
-- KEYS[1]  meta key.  ARGV: none.
-- Returns: {waiting (incl. jobs parked by a group limit), active, delayed, prioritized, completed, failed, paused (0/1), stale rejections,
--           waiting-children}.
redis.register_function{
  function_name = 'glidemq_counts',
  callback = function(keys, args)
    local P = prefix_of(keys[1])
    local meta = redis.call('HMGET', keys[1], 'paused', 'stale')
    return {redis.call('LLEN', P .. 'wait') + redis.call('ZCARD', P .. 'parked'), redis.call('ZCARD', P .. 'active'), redis.call('ZCARD', P .. 'delayed'),
      redis.call('ZCARD', P .. 'prio'), redis.call('ZCARD', P .. 'completed'), redis.call('ZCARD', P .. 'failed'),
      meta[1] == '1' and 1 or 0, tonumber(meta[2]) or 0,
      redis.call('ZCARD', P .. 'waiting-children')}
  end,
  flags = {'no-writes'},
}
