"""chain, group and chord (glidemq/engine/workflows.py) built into flows and run."""

from __future__ import annotations

import pytest

from glidemq import FlowJob, FlowProducer, Queue, chain, chord, group
from glidemq.engine.connection import Connection
from glidemq.engine.job import JobState
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import wait_state
from tests.features.flow_helpers import Recorder, ref, workers

pytestmark = pytest.mark.anyio


async def test_chain_runs_steps_in_order(conn: Connection, qname: str) -> None:
    a, b = qname, f"{qname}-b"
    node = await FlowProducer(conn).add(chain(FlowJob("s1", a), FlowJob("s2", b),
                                              FlowJob("s3", a), FlowJob("s4", b)))
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec}, concurrency=4):
        await wait_state(Queue(b, conn), node.job.id, JobState.COMPLETED)
    assert rec.order == ["s1", "s2", "s3", "s4"]
    s3 = node.children[0].job
    assert rec.values["s4"] == {ref(s3): "s3-done"}


async def test_group_completes_by_itself_with_its_members_values(conn: Connection,
                                                                 qname: str) -> None:
    a, b = qname, f"{qname}-b"
    node = await FlowProducer(conn).add(group(FlowJob("m1", a), FlowJob("m2", b),
                                              FlowJob("m3", b)))
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec}, concurrency=4):
        await wait_state(Queue(a, conn), node.job.id, JobState.COMPLETED)
    assert "__group__" not in rec.runs  # no handler ran for the group's parent
    parent = await Queue(a, conn).get_job(node.job.id)
    assert parent is not None
    assert parent.return_value == {ref(c.job): f"{c.job.name}-done" for c in node.children}


async def test_chord_callback_runs_once_after_all_members(conn: Connection, qname: str) -> None:
    a, b, c = qname, f"{qname}-b", f"{qname}-c"
    members = [FlowJob(f"m{i}", (a, b)[i % 2]) for i in range(6)]
    node = await FlowProducer(conn).add(chord(group(*members), FlowJob("callback", c)))
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec, c: rec}, concurrency=4):
        await wait_state(Queue(c, conn), node.job.id, JobState.COMPLETED)
    assert rec.runs["callback"] == 1 and rec.order[-1] == "callback"
    assert rec.values["callback"] == {ref(m.job): f"{m.job.name}-done" for m in node.children}
    assert len(rec.values["callback"]) == 6


async def test_a_chord_in_a_chain_and_a_group_in_a_chain(conn: Connection, qname: str) -> None:
    a, b = qname, f"{qname}-b"
    flow = chain(chord([FlowJob("x", a), FlowJob("y", b)], FlowJob("cb", a)),
                 group(FlowJob("g1", b), FlowJob("g2", a)),
                 FlowJob("final", b))
    node = await FlowProducer(conn).add(flow)
    rec = Recorder()
    async with workers(conn, {a: rec, b: rec}, concurrency=4):
        await wait_state(Queue(b, conn), node.job.id, JobState.COMPLETED)
    assert rec.order[-1] == "final"
    assert rec.order.index("cb") > max(rec.order.index("x"), rec.order.index("y"))
    assert set(rec.runs.values()) == {1}
    (grp,) = node.children
    assert rec.values["final"] == {ref(grp.job): await Queue(b, conn).get_children_values(
        grp.job.id)}


def test_helpers_refuse_empty_or_foreign_input() -> None:
    with pytest.raises(InvalidOptionError):
        chain()
    with pytest.raises(InvalidOptionError):
        group()
    with pytest.raises(InvalidOptionError):
        chord([], FlowJob("cb", "q"))
    with pytest.raises(InvalidOptionError):
        chain(FlowJob("a", "q"), "b")  # type: ignore[arg-type]
