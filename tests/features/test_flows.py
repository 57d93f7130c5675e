"""Flows (glidemq/engine/flows.py, glidemq/lua/_flows.lua): parents run after
their children, across queues and cluster slots; failure policies; an
interrupted add and a crashed relay are recoverable; the supervisor runs flows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from glidemq import FlowConflictError, FlowJob, FlowProducer, Queue
from glidemq.engine import deps
from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, Finish
from glidemq.engine.job import JobState
from glidemq.engine.keys import QueueKeys
from glidemq.errors import GlidemqConnectionError, InvalidOptionError
from tests.engine.helpers import REPO, hget, wait_for, wait_state
from tests.features.flow_helpers import Recorder, counts, ref, workers
from tests.servers import Cluster, Server

pytestmark = pytest.mark.anyio


async def outbox_len(conn: Connection, queue: str) -> int:
    return int(await conn.client().llen(deps.outbox_key(queue)))


async def test_parent_runs_last_and_sees_children_values(conn: Connection, qname: str) -> None:
    a, b, a2 = qname, f"{qname}-b", f"{qname}.sub"  # b: another root; a2: a's root
    node = await FlowProducer(conn).add(FlowJob("parent", a, children=[
        FlowJob("c1", a), FlowJob("c2", b), FlowJob("c3", a2)]))
    parent = node.job
    qa = Queue(a, conn)
    assert parent.state == JobState.WAITING_CHILDREN
    assert [j.id for j in await qa.get_jobs(JobState.WAITING_CHILDREN)] == [parent.id]
    before = await counts(qa)  # every job in exactly one state
    assert (before["waiting-children"], before["waiting"], sum(before.values())) == (1, 1, 2)

    rec = Recorder()
    async with workers(conn, {a: rec, b: rec, a2: rec}):
        await wait_state(qa, parent.id, JobState.COMPLETED)
    assert rec.order[-1] == "parent" and sorted(rec.order[:-1]) == ["c1", "c2", "c3"]
    values = {ref(c.job): f"{c.job.name}-done" for c in node.children}
    assert rec.values["parent"] == values  # job.get_children_values() inside the handler
    assert await qa.get_children_values(parent.id) == values
    after = await counts(qa)
    assert (after["completed"], after["waiting-children"], sum(after.values())) == (2, 0, 2)
    assert await outbox_len(conn, b) == 0


async def _three_roots(conn: Connection, base: str) -> list[str]:
    """Three queue names whose keys live on three different primaries."""
    c = conn.client()
    await c.initialize()
    names: list[str] = []
    nodes: set[str] = set()
    for i in range(500):
        name = f"{base}-r{i}"
        node = c.get_node_from_key(QueueKeys(name).meta)
        if node.name not in nodes:
            names.append(name)
            nodes.add(node.name)
            if len(names) == 3:
                return names
    raise AssertionError("no three roots on three nodes")


async def test_three_level_flow_on_three_slots(cluster: Cluster, qname: str) -> None:
    conn = Connection(cluster.url)
    try:
        q1, q2, q3 = await _three_roots(conn, qname)
        c = conn.client()
        slots = [await c.execute_command("CLUSTER", "KEYSLOT", QueueKeys(q).meta,
                                         target_nodes=c.get_random_node()) for q in (q1, q2, q3)]
        assert len(set(slots)) == 3, slots  # valkey's own hash of the three roots
        tree = FlowJob("top", q1, children=[
            FlowJob("mid", q2, children=[FlowJob("leaf1", q3), FlowJob("leaf2", q3),
                                         FlowJob("leaf3", q1)]),
            FlowJob("side", q3)])
        node = await FlowProducer(conn).add(tree)
        rec = Recorder()
        async with workers(conn, {q1: rec, q2: rec, q3: rec}):
            await wait_state(Queue(q1, conn), node.job.id, JobState.COMPLETED)
        assert rec.order[-1] == "top"
        assert rec.order.index("mid") > max(rec.order.index(n) for n in ("leaf1", "leaf2", "leaf3"))
        assert all(n == 1 for n in rec.runs.values()) and len(rec.runs) == 6
        mid, side = node.children
        assert rec.values["mid"] == {ref(x.job): f"{x.job.name}-done" for x in mid.children}
        assert rec.values["top"] == {ref(mid.job): "mid-done", ref(side.job): "side-done"}
    finally:
        await conn.close()


@pytest.mark.parametrize("cross", [True, False], ids=["cross-slot", "same-slot"])
@pytest.mark.parametrize("policy", ["fail", "ignore", "wait"])
async def test_child_failure_policy(conn: Connection, qname: str, policy: str,
                                    cross: bool) -> None:
    a, b = qname, (f"{qname}-b" if cross else f"{qname}.b")
    node = await FlowProducer(conn).add(FlowJob("parent", a, children=[
        FlowJob("ok", b), FlowJob("bad", b, {"fail": True}, {"on_child_failure": policy})]))
    parent, ok, bad = node.job, node.children[0].job, node.children[1].job
    qa, qb = Queue(a, conn), Queue(b, conn)
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec}):
        await wait_state(qb, bad.id, JobState.FAILED)
        if policy == "fail":
            await wait_state(qa, parent.id, JobState.FAILED)
            failed = await qa.get_job(parent.id)
            assert failed is not None
            assert failed.failed_reason == f"dependency {ref(bad)} failed: UnrecoverableError: boom"
        elif policy == "ignore":
            await wait_state(qa, parent.id, JobState.COMPLETED)
            assert rec.values["parent"] == {ref(ok): "ok-done"}
        else:
            await wait_state(qb, ok.id, JobState.COMPLETED)

            async def ok_counted() -> bool:  # relayed, for the cross-slot case
                return await hget(conn, QueueKeys(a).job(parent.id), "dpn") == "1"

            await wait_for(ok_counted, what="the ok child to be counted")
            assert await qa.get_job_state(parent.id) == JobState.WAITING_CHILDREN
            assert await qb.retry_jobs(JobState.FAILED) == 1  # a retry can still finish it
            await wait_state(qa, parent.id, JobState.COMPLETED)
            assert rec.values["parent"] == {ref(ok): "ok-done", ref(bad): "bad-done"}
    assert rec.runs["parent"] == (0 if policy == "fail" else 1)


async def test_fail_policy_cascades_up_the_tree(conn: Connection, qname: str) -> None:
    a, b, c = qname, f"{qname}-b", f"{qname}-c"
    node = await FlowProducer(conn).add(FlowJob("top", a, children=[
        FlowJob("mid", b, opts={"on_child_failure": "fail"}, children=[
            FlowJob("leaf", c, {"fail": True}, {"on_child_failure": "fail"}),
            FlowJob("sibling", a)])]))
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec, c: rec}):
        await wait_state(Queue(a, conn), node.job.id, JobState.FAILED)
    mid = node.children[0].job
    top = await Queue(a, conn).get_job(node.job.id)
    assert top is not None and top.failed_reason == (
        f"dependency {ref(mid)} failed: dependency {ref(node.children[0].children[0].job)} "
        "failed: UnrecoverableError: boom")
    assert "mid" not in rec.runs and "top" not in rec.runs


@pytest.mark.parametrize("calls_before_crash", [1, 2, 3])
async def test_interrupted_cross_slot_add_is_recoverable(
        conn: Connection, qname: str, monkeypatch: pytest.MonkeyPatch,
        calls_before_crash: int) -> None:
    a, b, c = qname, f"{qname}-b", f"{qname}-c"
    tree = FlowJob("top", a, children=[
        FlowJob("mid", b, children=[FlowJob("leaf", c), FlowJob("leaf2", a)]),
        FlowJob("side", c)])
    fp = FlowProducer(conn)
    real = FlowProducer._call
    calls = 0

    async def dies(self: FlowProducer, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > calls_before_crash:
            raise GlidemqConnectionError("the producer died")
        return await real(self, *args)

    monkeypatch.setattr(FlowProducer, "_call", dies)
    with pytest.raises(GlidemqConnectionError):
        await fp.add(tree, flow_id="f1")
    monkeypatch.undo()

    qa, qc = Queue(a, conn), Queue(c, conn)
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec, c: rec}):
        # The incomplete flow is visible: its top job is held in waiting-children.
        assert [j.id for j in await qa.get_jobs(JobState.WAITING_CHILDREN)][:1] == ["f1.0"]
        # leaf2 ("f1.0.0.1") is held too: mid, which waits for it, is written later.
        assert await fp.incomplete(a) == [("f1.0", "f1"), ("f1.0.0.1", "f1")]
        if calls_before_crash == 3:  # the leaves were written: they run, nothing else does
            await wait_state(qc, "f1.0.1", JobState.COMPLETED)
            await wait_state(qc, "f1.0.0.0", JobState.COMPLETED)
            assert await qa.get_job_state("f1.0") == JobState.WAITING_CHILDREN
        node = await fp.add(tree, flow_id="f1")  # the recovery: the same add again
        await wait_state(qa, node.job.id, JobState.COMPLETED)
    assert rec.runs == Counter({"top": 1, "mid": 1, "leaf": 1, "leaf2": 1, "side": 1})
    assert rec.order[-1] == "top"
    assert await fp.incomplete(a) == []


async def test_relay_crash_between_apply_and_ack_does_not_double_count(
        conn: Connection, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = qname, f"{qname}-b"
    node = await FlowProducer(conn).add(FlowJob("parent", a, children=[
        FlowJob("c1", b), FlowJob("c2", b)]))
    pkey = QueueKeys(a).job(node.job.id)
    consumer = Consumer(conn, b)
    await consumer.start()
    try:
        (first,) = (await consumer.fetch([], 1)).jobs
        res = await consumer.fetch([Finish.completed(first, b'"v1"')], 0)
        assert res.outbox == 1  # the parent is on another slot: a notice to relay

        async def dies(*args: Any) -> int:
            raise GlidemqConnectionError("the relay died")

        monkeypatch.setattr(deps, "ack_notices", dies)
        with pytest.raises(GlidemqConnectionError):
            await deps.relay(conn, b)  # applied, never removed
        monkeypatch.undo()
        assert await hget(conn, pkey, "dpn") == "1"
        assert await outbox_len(conn, b) == 1
        raw = await deps.read_outbox(conn, b)
        for _ in range(3):  # applying the same notice again changes nothing
            changed, _ = await conn.fcall("glidemq_flow_apply", QueueKeys(a).meta, *raw)
            assert changed == 0
        assert await deps.relay(conn, b) == 1
        assert await outbox_len(conn, b) == 0
        assert await hget(conn, pkey, "dpn") == "1"
        assert await Queue(a, conn).get_job_state(node.job.id) == JobState.WAITING_CHILDREN
        assert await Queue(a, conn).get_children_values(node.job.id) == {ref(first): "v1"}

        (second,) = (await consumer.fetch([], 1)).jobs
        assert (await consumer.fetch([Finish.completed(second, b'"v2"')], 0)).outbox == 1
        await consumer.relay()
        assert await hget(conn, pkey, "dpn") == "0"
        assert await Queue(a, conn).get_job_state(node.job.id) == JobState.WAITING
    finally:
        await consumer.close()


async def test_readding_is_idempotent_and_foreign_ids_conflict(conn: Connection,
                                                               qname: str) -> None:
    a, b = qname, f"{qname}-b"
    fp = FlowProducer(conn)
    tree = FlowJob("p", a, children=[FlowJob("c", b)])
    first = await fp.add(tree, flow_id="f1")
    again = await fp.add(tree, flow_id="f1")
    assert (again.job.id, again.children[0].job.id) == (first.job.id, first.children[0].job.id)
    assert sum((await counts(Queue(a, conn))).values()) == 1
    assert sum((await counts(Queue(b, conn))).values()) == 1
    assert await fp.incomplete(a) == []

    await Queue(b, conn).add("other", job_id="taken")
    with pytest.raises(FlowConflictError, match="taken"):
        await fp.add(FlowJob("p2", a, children=[FlowJob("c2", b, opts={"job_id": "taken"})]),
                     flow_id="f2")
    # b's call wrote nothing; the parent stays held and is listed as incomplete.
    assert await fp.incomplete(a) == [("f2.0", "f2")]
    assert (await Queue(b, conn).get_job("taken")).name == "other"  # type: ignore[union-attr]


@pytest.mark.parametrize("tree, match", [
    (FlowJob("p", "q", opts={"dedup": {"id": "x"}}), "unsupported"),
    (FlowJob("p", "q", opts={"on_child_failure": "explode"}), "on_child_failure"),
    (FlowJob("p", "q", opts={"auto_complete": True}), "no children"),
    (FlowJob("p", "q", children=[FlowJob("c", "q", opts={"job_id": "x"}),
                                 FlowJob("d", "q", opts={"job_id": "x"})]), "twice"),
    (FlowJob("p", "q", opts={"job_id": "a/b"}), "'/'"),
    (FlowJob("p", "bad:name"), "contains"),
])
async def test_invalid_flows_write_nothing(tree: FlowJob, match: str) -> None:
    fp = FlowProducer("valkey://127.0.0.1:1")  # never reached: validation comes first
    with pytest.raises(InvalidOptionError, match=match):
        await fp.add(tree)
    with pytest.raises(InvalidOptionError, match="flow_id"):
        await fp.add(FlowJob("p", "q"), flow_id="has.dot")


def start_supervisor(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "glidemq.supervisor", "--config",
                                 str(config)], cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_flow_through_the_supervisor(standalone: Server, tmp_path: Path, qname: str,
                                           request: pytest.FixtureRequest) -> None:
    a, b = qname, f"{qname}-b"
    record = tmp_path / "order.txt"
    tables = "".join(
        f'\n[[queues]]\nname = "{q}"\nhandler = "tests.handlers.flows_handlers:step"\n'
        "min_children = 1\nmax_children = 1\n" for q in (a, b))
    config = tmp_path / "glidemq.toml"
    config.write_text(f'[valkey]\nurl = "{standalone.url}"\n{tables}')
    proc = start_supervisor(config, tmp_path / "supervisor.log")

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    request.addfinalizer(stop)
    conn = Connection(standalone.url)
    try:
        data = {"record": str(record)}
        node = await FlowProducer(conn).add(FlowJob("parent", a, data, children=[
            *(FlowJob(f"child{i}", b, {**data, "value": i}) for i in range(3)),
            FlowJob("local", a, {**data, "value": 9})]))
        await wait_state(Queue(a, conn), node.job.id, JobState.COMPLETED)
        order = record.read_text().split()
        assert order[-1] == "parent" and sorted(order[:-1]) == ["child0", "child1", "child2",
                                                                 "local"]
        values = await Queue(a, conn).get_children_values(node.job.id)
        assert values == {ref(c.job): {"name": c.job.name, "value": c.job.data["value"]}
                          for c in node.children}
        assert proc.poll() is None, (tmp_path / "supervisor.log").read_text()
    finally:
        await conn.close()
