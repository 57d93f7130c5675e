-- Job scheduler hooks (called by glidemq_fetch). STUB: no schedulers yet.

-- Create the jobs of every due scheduler tick (exactly once per tick: this
-- runs inside the atomic fetch). Returns the number of jobs created.
local function schedulers_run(P, now, maxlen)
  return 0
end

-- Milliseconds until the next scheduler tick, or nil.
local function schedulers_wake_ms(P, now)
  return nil
end
