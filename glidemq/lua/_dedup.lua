-- Deduplication hooks: dedup_check (called by glidemq_add) and dedup_release
-- (called by the finish hook in _metrics.lua).
-- ext.dedup = {id, mode = 'simple' | 'throttle' | 'debounce', ttl = ms or -1}.
--
-- Key: P .. 'dedup:' .. <dedup id>, a string holding the id of the job that
-- owns the dedup id. One key per dedup id, so nothing is ever scanned:
--   simple    no expiry unless a ttl is given; deleted when its job completes
--             or fails for good (dedup_release). An entry whose job was
--             removed is found stale by the next add and replaced.
--   throttle  PEXPIRE ttl from the last accepted add; never refreshed by a skip.
--   debounce  PEXPIRE ttl, restarted by every accepted add.

local DEDUP_FINISHED = {completed = true, failed = true}

-- Returns the id of an existing job that makes this add a duplicate, or nil.
-- On nil the add goes ahead and `id` (the new job) becomes the entry's owner;
-- for debounce a still-delayed owner is deleted first (it is replaced).
local function dedup_check(P, ext, now, id, maxlen)
  local d = ext.dedup
  if not d then return nil end
  local key = P .. 'dedup:' .. d.id
  local ttl = tonumber(d.ttl) or -1
  local owner = redis.call('GET', key)
  if owner then
    if d.mode == 'throttle' then return owner end
    local ojob = P .. 'job:' .. owner
    local state = redis.call('HGET', ojob, 's')
    if state and not DEDUP_FINISHED[state] then
      if d.mode ~= 'debounce' or state ~= 'delayed' then return owner end
      -- Debounce: the newer add wins while the older one has not started.
      -- A delayed job is in no group or claim structure, so deleting it
      -- leaves no gap anything waits on (glide-mq's #206 deadlock).
      redis.call('ZREM', P .. 'delayed', owner)
      delete_job(P, owner)
      emit(P, maxlen or 0, 'removed', owner, 'reason', 'debounced', 'replacedBy', id)
    end
  end
  if ttl > 0 then
    redis.call('SET', key, id, 'PX', ttl)
  else
    redis.call('SET', key, id)
  end
  if d.mode == 'simple' then
    -- Remember the entry on the job so its finish can free the dedup id.
    redis.call('HSET', P .. 'job:' .. id, 'dd', d.id)
  end
  return nil
end

-- A job finished for good: free its simple-mode dedup id, if it still owns it.
-- `dd` is the job's 'dd' field (nil for jobs without simple dedup).
local function dedup_release(P, id, dd)
  if not dd then return end
  local key = P .. 'dedup:' .. dd
  if redis.call('GET', key) == id then redis.call('DEL', key) end
end
