-- Metrics hook: metrics_record, called inside the finishing call (completion
-- by glidemq_fetch, terminal failure by fail_terminal through metrics_hook),
-- so recording costs no round trip. It is this feature set's "finished for
-- good" hook, so it also frees the job's simple-mode dedup id (_dedup.lua).
--
-- Keys (kind = completed | failed):
--   metrics:<kind>      hash  "<minute ms>:c" jobs finished in that minute,
--                             "<minute ms>:d" sum of their durations (finish - processed_on, ms)
--   metrics:<kind>:idx  zset  minutes present in the hash (score = member = minute ms)
--   meta field mret     retention in ms (default 24 h)
-- Trimming runs once per new minute and drops at most BATCH_CAP old minutes.

local METRICS_RETENTION_MS = 86400000

-- pon and dd may come from the caller's read of the job (nil = read them here).
local function metrics_record(P, kind, job, now, pon, dd)
  local f
  if pon == nil and dd == nil then
    f = redis.call('HMGET', job, 'pon', 'dd')
  else
    f = {pon, dd}
  end
  local minute = now - now % 60000
  local key = P .. 'metrics:' .. kind
  local n = redis.call('HINCRBY', key, minute .. ':c', 1)
  local pon = tonumber(f[1])
  if pon then redis.call('HINCRBY', key, minute .. ':d', now - pon) end
  if n == 1 then
    local idx = key .. ':idx'
    redis.call('ZADD', idx, minute, minute)
    local keep = tonumber(redis.call('HGET', P .. 'meta', 'mret')) or METRICS_RETENTION_MS
    local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. (minute - keep), 'LIMIT', 0, BATCH_CAP)
    if #old > 0 then
      local fields = {}
      for i = 1, #old do
        fields[#fields + 1] = old[i] .. ':c'
        fields[#fields + 1] = old[i] .. ':d'
      end
      redis.call('HDEL', key, unpack(fields))
      redis.call('ZREM', idx, unpack(old))
    end
  end
  if f[2] then dedup_release(P, string.sub(job, #P + 5), f[2]) end
end
metrics_hook = metrics_record
