-- Deduplication hooks (called by glidemq_add). STUB: no deduplication yet.
-- ext is the job's extension map from the client (msgpack), or nil.

-- Returns the id of an existing job that makes this add a duplicate, or nil.
local function dedup_check(P, ext, now)
  return nil
end
