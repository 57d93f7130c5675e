-- Metrics hooks (called by glidemq_fetch on every finish). STUB: no metrics yet.

-- kind is 'completed' or 'failed'; job is the job's key.
local function metrics_record(P, kind, job, now)
end
metrics_hook = metrics_record
