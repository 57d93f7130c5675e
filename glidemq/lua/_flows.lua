-- Flow and dependency hooks (called by glidemq_add and glidemq_fetch).
-- STUB: no flows yet.

-- Returns 'waiting-children' when the new job must wait for its children or
-- dependencies instead of being enqueued, else nil.
local function flow_hold(P, id, job, ext, now)
  return nil
end

-- A job finished for good ('completed' or 'failed'); notify its parents /
-- dependents.
local function flow_finished(P, id, job, kind, now)
end
flow_finished_hook = flow_finished

-- Number of cross-slot notices waiting in this queue's outbox for the client
-- to relay (see glidemq/engine/flows.py).
local function flows_outbox_len(P)
  return 0
end
