"""Dependencies (FlowProducer.add_dag, Queue.add(depends_on=...)): a diamond runs
each node once, cycles are refused, finished dependencies count at once, and
a job many others depend on notifies every one of them (glide-mq #246).
"""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from glidemq import (
    CycleError,
    DagNode,
    FlowProducer,
    JobNotFoundError,
    JobSpec,
    Queue,
    UnrecoverableError,
)
from glidemq.engine.connection import Connection
from glidemq.engine.job import Job, JobState
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import wait_for, wait_state
from tests.features.flow_helpers import Recorder, counts, ref, workers

pytestmark = pytest.mark.anyio


async def test_diamond_runs_each_node_once(conn: Connection, qname: str) -> None:
    a, b, c = qname, f"{qname}-b", f"{qname}-c"
    jobs = await FlowProducer(conn).add_dag([
        DagNode("top", a),
        DagNode("left", b, deps=["top"]),
        DagNode("right", c, deps=["top"]),
        DagNode("bottom", a, deps=["left", "right"]),
    ])
    assert jobs["bottom"].state == JobState.WAITING_CHILDREN
    assert jobs["top"].state == JobState.WAITING
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec, c: rec}, concurrency=4):
        await wait_state(Queue(a, conn), jobs["bottom"].id, JobState.COMPLETED)
    assert rec.runs == Counter({"top": 1, "left": 1, "right": 1, "bottom": 1})
    assert rec.order[0] == "top" and rec.order[-1] == "bottom"
    assert rec.values["bottom"] == {ref(jobs["left"]): "left-done",
                                    ref(jobs["right"]): "right-done"}
    assert rec.values["left"] == {ref(jobs["top"]): "top-done"}


async def test_multi_parent_leaf_in_a_dag_notifies_every_dependent(conn: Connection,
                                                                    qname: str) -> None:
    queues = [qname, f"{qname}-b", f"{qname}.c", f"{qname}-d"]
    nodes = [DagNode("leaf", queues[0])] + [
        DagNode(f"dep{i}", q, deps=["leaf"]) for i, q in enumerate(queues)]
    jobs = await FlowProducer(conn).add_dag(nodes)
    rec = Recorder()
    async with workers(conn, {q: rec for q in queues}):
        for i, q in enumerate(queues):
            await wait_state(Queue(q, conn), jobs[f"dep{i}"].id, JobState.COMPLETED)
    assert rec.runs["leaf"] == 1 and all(rec.runs[f"dep{i}"] == 1 for i in range(4))


@pytest.mark.parametrize("nodes, error, match", [
    ([DagNode("a", "q", deps=["b"]), DagNode("b", "q", deps=["c"]),
      DagNode("c", "q", deps=["a"]), DagNode("d", "q")], CycleError, r"\['a', 'b', 'c'\]"),
    ([DagNode("a", "q", deps=["a"])], CycleError, "cycle"),
    ([DagNode("a", "q", deps=["zz"])], InvalidOptionError, "unknown"),
    ([DagNode("a", "q"), DagNode("a", "q")], InvalidOptionError, "twice"),
    ([], InvalidOptionError, "1 to"),
])
async def test_bad_graphs_are_refused_before_any_write(nodes: list[DagNode],
                                                       error: type[Exception], match: str
                                                       ) -> None:
    fp = FlowProducer("valkey://127.0.0.1:1")  # never reached
    with pytest.raises(error, match=match):
        await fp.add_dag(nodes)


async def test_depends_on_existing_jobs(conn: Connection, qname: str) -> None:
    a, other = qname, f"{qname}-x"
    qa, qx = Queue(a, conn), Queue(other, conn)
    done = await qa.add("done", {"v": 1})
    rec = Recorder()
    async with workers(conn, {a: rec}):
        await wait_state(qa, done.id, JobState.COMPLETED)
    # Finished dependencies count at once, under the same root and across roots.
    same = await qa.add("same", depends_on=[done.id])
    cross = await qx.add("cross", depends_on=[ref(done)])
    assert same.state == JobState.WAITING and cross.state == JobState.WAITING
    assert await qx.get_children_values(cross.id) == {ref(done): "done-done"}

    # An unfinished dependency on another root: wait until it completes.
    later = await qx.add("later")
    waiting = await qa.add("waiting", depends_on=[ref(later), done.id])
    assert waiting.state == JobState.WAITING_CHILDREN
    async with workers(conn, {a: rec, other: rec}):
        await wait_state(qa, waiting.id, JobState.COMPLETED)
    assert rec.values["waiting"] == {ref(later): "later-done", ref(done): "done-done"}
    assert rec.runs["waiting"] == 1


async def test_missing_or_self_dependency_is_refused(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(JobNotFoundError, match="does not exist"):
        await q.add("x", depends_on=[f"{qname}-other/nope"])
    with pytest.raises(CycleError, match="itself"):
        await q.add("x", job_id="me", depends_on=["me"])
    with pytest.raises(InvalidOptionError, match="depends_on"):
        await q.add("x", depends_on="not-a-list")
    with pytest.raises(InvalidOptionError, match="FlowProducer"):
        await q.add("x", parent="q/1")
    assert sum((await counts(q)).values()) == 0
    # A job may depend on one added before it in the same batch.
    first, second = await q.add_bulk([JobSpec("first", job_id="first-id"),
                                      JobSpec("second", opts={"depends_on": ["first-id"]})])
    assert (first.state, second.state) == (JobState.WAITING, JobState.WAITING_CHILDREN)


@pytest.mark.parametrize("cross", [True, False], ids=["cross-slot", "same-slot"])
async def test_leaf_with_many_dependents_notifies_them_all(conn: Connection, qname: str,
                                                           cross: bool) -> None:
    """glide-mq #246: dependents added while the leaf runs, and as it completes."""
    a = qname
    b = f"{qname}-b" if cross else f"{qname}.b"
    qa, qb = Queue(a, conn), Queue(b, conn)
    release = anyio.Event()
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> str:
        runs[job.name] += 1
        if job.name == "leaf":
            await release.wait()
        return job.name

    leaf = await qa.add("leaf")
    dependents: list[Job] = []
    async with workers(conn, {a: handler, b: handler}, concurrency=8):
        await wait_state(qa, leaf.id, JobState.ACTIVE)
        for i in range(10):  # while the leaf runs
            dependents.append(await (qa if i % 2 else qb).add(f"d{i}", depends_on=[ref(leaf)]))

        async def add_more(i: int) -> None:
            dependents.append(await (qa if i % 2 else qb).add(f"d{i}", depends_on=[ref(leaf)]))

        async with anyio.create_task_group() as tg:  # racing the leaf's completion
            for i in range(10, 30):
                tg.start_soon(add_more, i)
            release.set()

        async def all_done() -> bool:
            for d in dependents:
                if await Queue(d.queue_name, conn).get_job_state(d.id) != JobState.COMPLETED:
                    return False
            return True

        await wait_for(all_done, what="every dependent to complete")
    assert runs["leaf"] == 1 and len(runs) == 31 and set(runs.values()) == {1}


async def test_a_long_failure_cascade_is_split_into_bounded_calls(conn: Connection,
                                                                  qname: str) -> None:
    """A chain longer than the per-call cap fails all the way (the rest goes by relay)."""
    n = 1005  # > CASCADE_CAP (1000) in _flows.lua
    nodes = [DagNode("n0", qname, opts={"on_child_failure": "fail"})] + [
        DagNode(f"n{i}", qname, deps=[f"n{i - 1}"], opts={"on_child_failure": "fail"})
        for i in range(1, n)]
    jobs = await FlowProducer(conn).add_dag(nodes)
    q = Queue(qname, conn)
    assert (await counts(q))["waiting-children"] == n - 1

    async def boom(job: Job) -> None:
        raise UnrecoverableError("first link broke")

    async with workers(conn, {qname: boom}):
        await wait_state(q, jobs[f"n{n - 1}"].id, JobState.FAILED)
    assert (await counts(q))["failed"] == n
    last = await q.get_job(jobs[f"n{n - 1}"].id)
    assert last is not None and last.failed_reason is not None
    assert last.failed_reason.startswith(f"dependency {qname}/{jobs[f'n{n - 2}'].id} failed")
    assert len(last.failed_reason) < 1200  # each link quotes at most 1000 chars of its cause
