"""A real supervisor survives crashing children: retries on a fresh child, dead letters, no loop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import JobState
from glidemq.engine.queue import JobSpec, Queue
from tests.servers import Cluster
from tests.supervisor.harness import H, Launcher, counts, read_records, wait_counts, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CRASHES = {  # how the first attempt dies -> the reason stored on the job
    "segv": "child crashed: signal 11",
    "exit3": "child crashed: exit 3",
    "kill": "child crashed: signal 9",  # the test SIGKILLs the child
}


def _queue_table(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "handler": H + "behave", "min_children": 1, "max_children": 1,
            "attempts": 2, **extra}


async def _crash_then_retry(launch: Launcher, q: Queue, how: str, tmp_path: Path,
                            **kwargs: object) -> None:
    record = tmp_path / "starts.txt"
    sup = await launch([_queue_table(q.name)], **kwargs)
    crash = "hang" if how == "kill" else how
    job = await q.add("poisoned-once", {"crash": crash, "when": "first", "record": str(record)})
    if how == "kill":
        rows = await wait_for(lambda: read_records(record), "the first attempt to start")
        first_pid = rows[0][0]
        assert first_pid in {c.pid for c in sup.children()}
        os.kill(first_pid, signal.SIGKILL)

    await wait_counts(q, completed=1)
    done = await q.get_job(job.id)
    assert done is not None
    assert done.failed_reason == CRASHES[how]  # the first attempt's reason stays on the job
    assert done.attempts_made == 1
    starts = read_records(record)
    assert [a for _, _, a in starts] == [0, 1]
    assert done.return_value["pid"] == starts[1][0] != starts[0][0]  # a fresh child ran it
    retrying = [f for _, f in await q.events() if f["event"] == "retrying"]
    assert retrying == [{"event": "retrying", "jobId": job.id,
                         "failedReason": CRASHES[how], "delay": "0"}]

    # The supervisor is healthy and keeps serving.
    await q.add_bulk([JobSpec("after", {}) for _ in range(5)])
    await wait_counts(q, completed=6)
    assert sup.alive()
    assert await sup.metric("glidemq_child_restarts_total", q.name) == 1
    assert await sup.metric("glidemq_pool_stopped", q.name) == 0
    assert (await sup.http("/healthz"))[0] == 200


@pytest.mark.parametrize("how", sorted(CRASHES))
async def test_crashed_attempt_is_retried_on_a_fresh_child(
        launch: Launcher, qname: str, how: str, tmp_path: Path) -> None:
    async with Queue(qname, launch.url) as q:
        await _crash_then_retry(launch, q, how, tmp_path)


async def test_crash_retry_against_a_cluster(launch: Launcher, cluster: Cluster, qname: str,
                                             tmp_path: Path) -> None:
    port = cluster.nodes[0].port  # the config takes valkey:// plus cluster = true
    async with Queue(qname, Connection(f"valkey://127.0.0.1:{port}", cluster=True)) as q:
        await _crash_then_retry(launch, q, "segv", tmp_path,
                                url=f"valkey://127.0.0.1:{port}", cluster=True)


@pytest.mark.parametrize("how", ["segv", "exit3"])
async def test_single_attempt_crash_ends_failed_with_the_reason(
        launch: Launcher, qname: str, how: str) -> None:
    sup = await launch([_queue_table(qname, attempts=1)])
    async with Queue(qname, launch.url) as q:
        job = await q.add("poison", {"crash": how, "when": "always"})
        await wait_counts(q, failed=1)
        failed = await q.get_job(job.id)
        assert failed is not None and failed.state == JobState.FAILED
        assert failed.failed_reason == CRASHES[how]
        assert failed.attempts_made == 1
        ok = await q.add("fine", {})
        await wait_counts(q, completed=1)
        assert (await q.get_job(ok.id)).return_value["pid"] in {c.pid for c in sup.children()}


async def test_poison_job_is_dead_lettered_without_a_crash_loop(
        launch: Launcher, qname: str, tmp_path: Path) -> None:
    attempts, pool = 3, 2
    record = tmp_path / "poison-starts.txt"
    sup = await launch([{
        "name": qname, "handler": H + "behave", "min_children": pool, "max_children": pool,
        "attempts": attempts, "dead_letter_queue": f"{qname}.dlq",
        "autoscale": {"enabled": False}}])
    await sup.wait_metric("glidemq_pool_size", qname, lambda v: v == pool, "pool started")
    async with Queue(qname, launch.url) as q, Queue(f"{qname}.dlq", launch.url) as dlq:
        poison = await q.add("poison", {"crash": "segv", "when": "always",
                                        "record": str(record)})
        normal = await q.add_bulk([JobSpec("normal", {"sleep": 0.02}) for _ in range(20)])

        await wait_counts(q, completed=20, failed=1, waiting=0, active=0, delayed=0)
        await wait_counts(dlq, waiting=1)

        # Exactly `attempts` starts of the poison job, each on a different child.
        starts = read_records(record)
        assert [(j, a) for _, j, a in starts] == [(poison.id, a) for a in range(attempts)]
        assert len({p for p, _, _ in starts}) == attempts
        failed = await q.get_job(poison.id)
        assert failed is not None
        assert failed.failed_reason == "child crashed: signal 11"
        assert failed.attempts_made == attempts
        (dead,) = await dlq.get_jobs(JobState.WAITING)
        assert dead.data == {"crash": "segv", "when": "always", "record": str(record)}
        assert dead.failed_reason == "child crashed: signal 11"
        for j in normal:
            assert (await q.get_job(j.id)).state == JobState.COMPLETED  # type: ignore[union-attr]

        # No crash loop: one respawn per crash, then the pool is whole and healthy.
        await sup.wait_metric("glidemq_pool_size", qname, lambda v: v == pool, "pool refilled")
        assert await sup.metric("glidemq_child_restarts_total", qname) == attempts
        await wait_for(lambda: sup.count_log(r"child \d+ up") >= pool + attempts,
                                "every respawned child to say Hello")
        assert sup.count_log(r"child \d+ up") == pool + attempts
        assert await sup.metric("glidemq_pool_stopped", qname) == 0
        assert (await sup.http("/healthz"))[0] == 200
        assert (await counts(q))["completed"] == 20


@pytest.mark.parametrize("handler", ["tests.handlers.nonexistent:fn", "tests.handlers.broken:fn"])
async def test_boot_error_stops_its_pool_without_a_spawn_storm(
        launch: Launcher, qname: str, handler: str) -> None:
    bad, good = f"{qname}-bad", f"{qname}-good"
    async with Queue(bad, launch.url) as bq, Queue(good, launch.url) as gq:
        await bq.add("early", None)  # may be prefetched while the children boot
        sup = await launch([
            {"name": bad, "handler": handler, "min_children": 2, "max_children": 2},
            {"name": good, "handler": H + "pid", "min_children": 1, "max_children": 1}])
        await sup.wait_metric("glidemq_pool_stopped", bad, lambda v: v == 1, "bad pool stopped")
        status, body = await sup.http("/healthz")
        assert status == 503 and bad in body, body

        await bq.add("late", None)
        await gq.add_bulk([JobSpec("j", None) for _ in range(10)])
        await wait_counts(gq, completed=10)  # the other queue is served meanwhile
        # A stopped pool holds nothing: what it had claimed goes back, unpenalised.
        await wait_counts(bq, waiting=2, active=0)
        assert all(j.attempts_made == 0 for j in await bq.get_jobs(JobState.WAITING))

        # Each child the pool started failed to boot once; none was restarted.
        await sup.wait_metric("glidemq_pool_size", bad, lambda v: v == 0, "no child left")
        boots = sup.count_log(r"cannot start, pool stopped")
        assert 1 <= boots <= 2
        metrics = await sup.metrics()
        assert metrics["glidemq_child_restarts_total"][bad] == 0
        assert metrics["glidemq_pool_stopped"][good] == 0
        await anyio.sleep(1.0)  # several restart backoffs (0.2 s): still no new spawn
        assert sup.count_log(r"cannot start, pool stopped") == boots
        assert sup.alive()


async def test_restart_intensity_stops_a_crash_looping_pool(launch: Launcher,
                                                            qname: str) -> None:
    bad, good = qname, f"{qname}-good"
    sup = await launch(
        [_queue_table(bad, attempts=1), _queue_table(good)],
        supervisor={"restart_intensity": 2, "restart_period": 60})
    async with Queue(bad, launch.url) as bq, Queue(good, launch.url) as gq:
        await bq.add_bulk([JobSpec("poison", {"crash": "exit3", "when": "always"})
                           for _ in range(6)])
        await sup.wait_metric("glidemq_pool_stopped", bad, lambda v: v == 1,
                              "the pool to stop after more than 2 crashes")
        assert (await sup.http("/healthz"))[0] == 503
        await gq.add_bulk([JobSpec("fine", {}) for _ in range(5)])
        await wait_counts(gq, completed=5)  # the other pool is unaffected
        c = await counts(bq)
        assert c["failed"] == 3 and c["active"] == 0  # the rest went back, unpenalised
        assert c["waiting"] == 3
        assert await sup.metric("glidemq_child_restarts_total", bad) == 3
        stopped = [e for e in await bq.events(1000) if e[1].get("event") == "pool-stopped"]
        assert len(stopped) == 1 and "restart intensity" in stopped[0][1]["reason"], stopped
        assert sup.alive()


async def test_idle_child_killed_is_replaced(launch: Launcher, qname: str) -> None:
    sup = await launch([_queue_table(qname)])
    await wait_for(lambda: len(sup.children()) == 1, "one child")
    (idle,) = sup.children()
    await wait_for(lambda: f"child {idle.pid} up" in sup.log(), "its Hello")
    await sup.wait_metric("glidemq_busy_children", qname, lambda v: v == 0, "the child idle")
    idle.kill()  # e.g. the OOM killer, between two jobs
    await wait_for(lambda: {c.pid for c in sup.children()} - {idle.pid}, "a new child")
    async with Queue(qname, launch.url) as q:
        job = await q.add("after", {})
        await wait_counts(q, completed=1)
        done = await q.get_job(job.id)
        assert done is not None and done.attempts_made == 0  # died idle: no job paid for it
        assert done.return_value["pid"] != idle.pid
    assert sup.alive()
    assert await sup.metric("glidemq_child_restarts_total", qname) == 1
