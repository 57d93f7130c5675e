"""The autoscale policy, table-tested without processes."""

from __future__ import annotations

import math
import random

import msgspec
import pytest

from glidemq.supervisor.autoscale import AutoscalePolicy, Observation, decide, is_busy
from glidemq.supervisor.config import AutoscaleConfig

POLICY = AutoscalePolicy(
    target_backlog_per_child=4, scale_up_cooldown=2, scale_down_window=30,
    cpu_high=90, min_available_mb=256,
)  # fmt: skip


def obs(**changes: object) -> Observation:
    """A steady pool of 4 (min 1, max 16), all busy, no backlog, plenty of everything."""
    base = Observation(
        backlog=0, in_flight=4, child_cpu_percent=[10.0] * 4, system_cpu_percent=20.0,
        available_mb=4096.0, current=4, desired=4, min_children=1, max_children=16,
        cpu_count=8, seconds_since_change=100.0, seconds_since_busy=0.0,
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)


ROWS = [
    # -- hold -------------------------------------------------------------------
    ("steady, all busy, no backlog: hold", obs(), 4),
    ("backlog exactly at target: hold", obs(backlog=16), 4),
    ("small backlog below target, idle long: hysteresis holds", obs(backlog=3,
     seconds_since_busy=math.inf, in_flight=1), 4),
    # -- bounds -----------------------------------------------------------------
    ("desired above a lowered max: clamp at once", obs(desired=20, seconds_since_change=0), 16),
    ("desired below a raised min: clamp at once", obs(desired=2, min_children=3), 3),
    ("min above max is clamped to min", obs(desired=9, min_children=5, max_children=3), 5),
    # -- wake from zero ---------------------------------------------------------
    ("scaled to zero, jobs arrive: one child even in cooldown", obs(desired=0, current=0,
     min_children=0, backlog=1, seconds_since_change=0, in_flight=0, child_cpu_percent=[]), 1),
    ("scaled to zero, CPU saturated: still one child", obs(desired=0, current=0, in_flight=0,
     min_children=0, backlog=50, system_cpu_percent=99, child_cpu_percent=[]), 1),
    ("scaled to zero, no jobs: stay at zero", obs(desired=0, current=0, in_flight=0,
     min_children=0, seconds_since_busy=math.inf, child_cpu_percent=[]), 0),
    # -- grow -------------------------------------------------------------------
    ("backlog just over target: at least one more", obs(backlog=17), 5),
    ("step proportional to backlog", obs(backlog=40), 10),
    ("step capped at max", obs(backlog=1000), 16),
    ("grow uses desired (spawns pending), not current", obs(backlog=40, current=2), 10),
    ("in cooldown: hold", obs(backlog=40, seconds_since_change=1.0), 4),
    ("cooldown just passed: grow", obs(backlog=40, seconds_since_change=2.0), 10),
    ("system CPU at cpu_high: no growth", obs(backlog=40, system_cpu_percent=90), 4),
    ("memory short: no growth", obs(backlog=40, available_mb=255), 4),
    ("memory exactly at the floor: grow", obs(backlog=40, available_mb=256), 10),
    ("CPU-bound children: step limited to free cores", obs(backlog=40,
     child_cpu_percent=[100.0] * 4, system_cpu_percent=60), 6),
    ("CPU-bound, almost no headroom: still one", obs(backlog=40,
     child_cpu_percent=[100.0] * 4, system_cpu_percent=89), 5),
    ("IO-bound children ignore the core limit", obs(backlog=40,
     child_cpu_percent=[5.0] * 4, system_cpu_percent=60), 10),
    ("at max already: hold", obs(desired=16, current=16, backlog=1000), 16),
    # -- shrink -----------------------------------------------------------------
    ("idle less than the window: hold", obs(desired=8, in_flight=0,
     seconds_since_busy=29.9), 8),
    ("idle for the window: shed half the idle above min, rounded up", obs(desired=8,
     in_flight=0, seconds_since_busy=30), 4),
    ("jobs waiting now, though the actor saw idle: no shrink", obs(desired=8, in_flight=0,
     backlog=1, seconds_since_busy=60), 8),
    ("shrink never below running jobs", obs(desired=8, in_flight=6,
     seconds_since_busy=60), 7),
    ("shrink never below min", obs(desired=4, in_flight=0, min_children=3,
     seconds_since_busy=60), 3),
    ("idle but in cooldown: hold", obs(desired=8, in_flight=0, seconds_since_busy=60,
     seconds_since_change=1), 8),
    ("idle long, one surplus child: drop it", obs(desired=2, in_flight=1,
     seconds_since_busy=60), 1),
    ("min 0, all idle: shrink toward zero", obs(desired=1, in_flight=0, min_children=0,
     seconds_since_busy=60), 0),
    ("at min, idle: hold", obs(desired=1, in_flight=0, seconds_since_busy=60), 1),
    ("CPU saturated but idle long: shrink still allowed", obs(desired=8, in_flight=0,
     seconds_since_busy=60, system_cpu_percent=100), 4),
]  # fmt: skip


@pytest.mark.parametrize(("why", "observation", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_decide_table(why: str, observation: Observation, expected: int) -> None:
    assert decide(observation, POLICY) == expected, why


@pytest.mark.parametrize(
    ("backlog", "in_flight", "desired", "busy"),
    [(1, 0, 4, True), (0, 4, 4, True), (0, 3, 4, False), (0, 0, 0, True)],
)
def test_is_busy(backlog: int, in_flight: int, desired: int, busy: bool) -> None:
    assert is_busy(backlog, in_flight, desired) is busy


def test_policy_from_config() -> None:
    config = AutoscaleConfig(target_backlog_per_child=2, cpu_high=70, scale_down_window=5)
    policy = AutoscalePolicy.from_config(config)
    assert (policy.target_backlog_per_child, policy.cpu_high) == (2, 70)
    assert policy.scale_down_window == 5 and policy.scale_up_cooldown == 2


def test_result_always_within_bounds() -> None:
    """Property: whatever the sample, the answer lies in [min, max]."""
    rng = random.Random(1234)
    for _ in range(5000):
        lo = rng.randint(0, 8)
        hi = rng.randint(max(lo, 1), 32)
        desired = rng.randint(0, 40)
        children = rng.randint(0, 40)
        o = Observation(
            backlog=rng.choice([0, rng.randint(0, 10), rng.randint(0, 10_000)]),
            in_flight=rng.randint(0, 50),
            child_cpu_percent=[rng.uniform(0, 200) for _ in range(children)],
            system_cpu_percent=rng.uniform(0, 100),
            available_mb=rng.uniform(0, 8192),
            current=children, desired=desired, min_children=lo, max_children=hi,
            cpu_count=rng.randint(1, 64),
            seconds_since_change=rng.choice([0.0, rng.uniform(0, 100), math.inf]),
            seconds_since_busy=rng.choice([0.0, rng.uniform(0, 100), math.inf]),
        )  # fmt: skip
        policy = AutoscalePolicy(
            target_backlog_per_child=rng.uniform(0.1, 20), scale_up_cooldown=rng.uniform(0, 5),
            scale_down_window=rng.uniform(0, 60), cpu_high=rng.uniform(1, 100),
            min_available_mb=rng.uniform(0, 1024),
        )  # fmt: skip
        result = decide(o, policy)
        assert isinstance(result, int) and lo <= result <= hi, (o, policy, result)
        recently_busy = o.seconds_since_busy < policy.scale_down_window
        if lo <= desired <= hi and o.backlog == 0 and recently_busy:
            assert result == desired  # nothing waiting, recently busy: never moves


def test_repeated_decisions_converge_without_flapping() -> None:
    """Applying decide() to its own output under a steady load settles and stays."""
    o = obs(backlog=200, desired=1, current=1)
    sizes = []
    for _ in range(10):
        size = decide(o, POLICY)
        o = msgspec.structs.replace(o, desired=size, current=size,
                                    seconds_since_change=100.0)  # fmt: skip
        sizes.append(size)
    assert sizes[-1] == 16 and sizes[-3:] == [16, 16, 16]
