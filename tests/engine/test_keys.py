"""Key layout: every key of a queue (and of its dead-letter queue) carries the
root's hash tag, so it lives on one cluster slot; different roots spread."""

from __future__ import annotations

import pytest
from valkey.crc import key_slot

from glidemq.engine.connection import Connection
from glidemq.engine.job import Job
from glidemq.engine.keys import QueueKeys, prefix, root, validate_job_id
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from tests.engine.helpers import running, wait_counts

pytestmark = pytest.mark.anyio


def test_root_and_prefix() -> None:
    assert root("orders") == "orders"
    assert root("orders.dlq") == "orders"
    assert root("orders.eu.retry") == "orders"
    assert prefix("orders") == "glidemq:{orders}:orders:"
    assert prefix("orders.dlq") == "glidemq:{orders}:orders.dlq:"
    k = QueueKeys("orders.dlq")
    assert (k.meta, k.wait, k.active) == ("glidemq:{orders}:orders.dlq:meta",
                                          "glidemq:{orders}:orders.dlq:wait",
                                          "glidemq:{orders}:orders.dlq:active")
    assert k.job("42") == "glidemq:{orders}:orders.dlq:job:42"
    assert k.log("x") == "glidemq:{orders}:orders.dlq:log:x"


def test_valid_job_ids() -> None:
    for ok in ("a", "order-42", "x" * 256, "é-unicode", "1a", "a.b"):
        assert validate_job_id(ok) == ok


async def test_every_key_of_a_queue_and_its_dlq_shares_one_slot(
        conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    dlq = Queue(f"{qname}.dlq", conn)

    async def process(job: Job) -> str:
        await job.log("line")
        await job.update_progress(1)
        if job.data == "fail":
            raise ValueError("x")
        return "ok"

    await q.add("j", "ok")
    await q.add("j", "fail")
    await q.add("j", "later", delay=3600)
    await q.add("j", "prio", priority=2)
    await q.pause()
    await q.resume()
    async with running(Worker(qname, process, conn, dead_letter_queue=dlq.name)):
        await wait_counts(q, completed=2, failed=1)
    c = conn.client()
    keys = [k.decode() async for k in c.scan_iter(match=f"glidemq:{{{qname}}}:*")]
    suffixes = {k.rsplit(":", 1)[-1] for k in keys}
    assert {"completed", "failed", "delayed", "events", "id"} <= suffixes
    assert any(k.startswith(dlq.keys.prefix) for k in keys)
    assert any(":log:" in k for k in keys)
    slots = {key_slot(k.encode()) for k in keys}
    assert slots == {key_slot(q.keys.meta.encode())}
    assert key_slot(dlq.keys.meta.encode()) == key_slot(q.keys.meta.encode())
    if conn.cluster:  # the server agrees with our slot computation
        node = c.get_node_from_key(q.keys.meta)
        server_slot = await c.execute_command("CLUSTER", "KEYSLOT", q.keys.meta,
                                              target_nodes=node)
        assert int(server_slot) in slots


async def test_different_roots_spread_over_slots(conn: Connection, qname: str) -> None:
    names = [f"{qname}-{i}" for i in range(12)]
    slots = {key_slot(QueueKeys(n).meta.encode()) for n in names}
    assert len(slots) > 1
    for n in names:  # and each works wherever it landed
        await Queue(n, conn).add("j", {})
        assert (await Queue(n, conn).get_job_counts())["waiting"] == 1
    if conn.cluster:
        c = conn.client()
        owners = {c.get_node_from_key(QueueKeys(n).meta).name for n in names}
        assert len(owners) > 1, "12 roots all on one node of a 3-node cluster"
