"""The autoscale policy: observations in, desired pool size out.

Owns :func:`decide`, a pure function, and the two Structs it reads. The
autoscaler actor samples psutil and queue counts into an :class:`Observation`,
calls :func:`decide`, and hands the result to the pool, which reconciles.

Must not: sample anything, sleep, read clocks, or touch processes. Every input,
including elapsed times, arrives in the Observation, so every rule can be
tested from a table.

The rules, in order:

1. Out of bounds (after a reload changed min/max): clamp, at once.
2. Scaled to zero with jobs waiting: start ``min_children`` or 1, at once;
   a queue with work and no child makes no progress at all.
3. Grow when the backlog per desired child exceeds the target, the change
   cooldown has passed, the machine's CPU is under ``cpu_high`` and available
   memory is at least ``min_available_mb``. The step is proportional to the
   backlog (enough children to bring it back to the target), at least one, and
   for CPU-bound children no more than the CPU headroom can feed.
4. Shrink only when the pool has not been busy (see :func:`is_busy`) for the
   whole ``scale_down_window``, is idle now, and the cooldown has passed; shed
   half the idle children each step (rounded up), never below what is running
   now nor below ``min_children``.
5. Otherwise hold. Growth needs backlog above the target but shrinking needs
   no backlog at all: that gap is the hysteresis that stops flapping.

The result is always within ``[min_children, max_children]``.
"""

from __future__ import annotations

import math

import msgspec

from glidemq.supervisor.config import AutoscaleConfig


class AutoscalePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The tunables of :func:`decide`; see ``[queues.autoscale]`` in the config."""

    target_backlog_per_child: float = 4.0
    scale_up_cooldown: float = 2.0
    scale_down_window: float = 30.0
    cpu_high: float = 90.0
    min_available_mb: float = 256.0

    @classmethod
    def from_config(cls, config: AutoscaleConfig) -> AutoscalePolicy:
        """Take the policy's tunables from a queue's ``autoscale`` table."""
        return cls(
            target_backlog_per_child=config.target_backlog_per_child,
            scale_up_cooldown=config.scale_up_cooldown,
            scale_down_window=config.scale_down_window,
            cpu_high=config.cpu_high,
            min_available_mb=config.min_available_mb,
        )


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of a pool and its machine, taken by the autoscaler actor.

    Elapsed times are in seconds and measured by the actor on a monotonic
    clock; ``math.inf`` means "never" (e.g. no change since start).
    """

    backlog: int  # jobs waiting in the queue, ready to run
    in_flight: int  # jobs this pool is running now
    child_cpu_percent: list[float]  # per live child, psutil style (100 = one core)
    system_cpu_percent: float  # whole machine, 0..100
    available_mb: float  # psutil.virtual_memory().available in MiB
    current: int  # live children
    desired: int  # the pool's desired size before this decision
    min_children: int
    max_children: int
    cpu_count: int = 1  # logical CPUs, to turn CPU percentages into cores
    seconds_since_change: float = math.inf  # since "desired" last changed
    seconds_since_busy: float = math.inf  # since is_busy() was last true


def is_busy(backlog: int, in_flight: int, desired: int) -> bool:
    """Whether the pool needs every child it has: jobs wait, or all children work.

    The actor calls this on every sample to keep ``seconds_since_busy``; it
    lives here so the definition of "idle" sits next to the rule that uses it.
    """
    return backlog > 0 or in_flight >= desired


def decide(obs: Observation, policy: AutoscalePolicy) -> int:
    """Return the desired pool size for this observation.

    Args:
        obs: the pool and machine as sampled now.
        policy: the queue's autoscale tunables.

    Returns:
        The new desired size, within ``[obs.min_children, obs.max_children]``;
        ``obs.desired`` when nothing should change.
    """
    lo, hi = obs.min_children, max(obs.min_children, obs.max_children)
    if not lo <= obs.desired <= hi:
        return _clamp(obs.desired, lo, hi)
    if obs.desired == 0 and obs.backlog > 0:
        return _clamp(1, lo, hi)
    cooled = obs.seconds_since_change >= policy.scale_up_cooldown
    if obs.backlog > policy.target_backlog_per_child * obs.desired:
        if cooled and _has_headroom(obs, policy):
            return _clamp(obs.desired + _grow_step(obs, policy), lo, hi)
        return obs.desired
    idle_long = obs.seconds_since_busy >= policy.scale_down_window
    if idle_long and cooled and not is_busy(obs.backlog, obs.in_flight, obs.desired):
        surplus = obs.desired - max(obs.in_flight, lo)
        if surplus > 0:
            return obs.desired - math.ceil(surplus / 2)
    return obs.desired


def _has_headroom(obs: Observation, policy: AutoscalePolicy) -> bool:
    """A new child is only worth spawning if the machine can feed it."""
    return obs.system_cpu_percent < policy.cpu_high and obs.available_mb >= policy.min_available_mb


def _grow_step(obs: Observation, policy: AutoscalePolicy) -> int:
    """How many children to add: enough to bring the backlog back to the target.

    CPU-bound children (each burning a good share of a core) are further
    limited to what the idle cores under ``cpu_high`` can run, so one burst of
    backlog does not spawn past the machine and thrash.
    """
    wanted = math.ceil(obs.backlog / policy.target_backlog_per_child) - obs.desired
    step = max(1, wanted)
    if obs.child_cpu_percent:
        cores_per_child = sum(obs.child_cpu_percent) / len(obs.child_cpu_percent) / 100
        if cores_per_child >= 0.25:
            free_cores = (policy.cpu_high - obs.system_cpu_percent) / 100 * obs.cpu_count
            step = min(step, max(1, math.floor(free_cores / cores_per_child)))
    return step


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))
