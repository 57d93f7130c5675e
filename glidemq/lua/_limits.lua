-- Claim gates: global concurrency, rate limits, groups (called by glidemq_fetch
-- and glidemq_add). STUB: no limits yet.

-- How many jobs may be claimed now, at most `want`.
local function claim_budget(P, want, now)
  return want
end

-- Called for each popped job before it becomes active. Returns true to claim
-- it; false when the gate parked it elsewhere (it must then be in some state
-- set, never lost).
local function claim_gate(P, id, job, now)
  return true
end

-- Called whenever a job leaves `active` (completed, failed, retried,
-- released, reclaimed as stalled).
local function left_active(P, id, job, now)
end

-- Milliseconds until a limit lets more jobs through, or nil.
local function limits_wake_ms(P, now)
  return nil
end

-- Called once per added job after its hash exists (store group key, cost...).
local function ext_added(P, id, job, ext, now)
end
