"""Bad input: typed errors naming the field, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer
from glidemq.engine.job import Backoff, Job, KeepJobs
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import (
    InvalidOptionError,
    InvalidQueueNameError,
    JobError,
    PayloadTooLargeError,
)
from tests.engine.helpers import queue_keys, running, wait_counts

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def nothing_written(conn: Connection, q: Queue) -> None:
    assert sum((await q.get_job_counts()).values()) == 0
    assert await queue_keys(conn, q) == []


BAD_NAMES = [
    ("", "must not be empty"),
    ("a{b", "contains '{'"),
    ("a}b", "contains '}'"),
    ("orders:eu", "contains ':'"),
    ("with space", "contains ' '"),
    ("tab\there", "contains"),
    ("x" * 129, "129 characters; the limit is 128"),
    (".hidden", "must not start or end with '.'"),
    (42, "must be a str"),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_invalid_queue_names(url: str, name: Any, message: str) -> None:
    for make in (lambda: Queue(name, url), lambda: Worker(name, print, url),
                 lambda: Consumer(url, name)):
        with pytest.raises(InvalidQueueNameError, match="queue name") as info:
            make()
        assert message in str(info.value)
        assert isinstance(info.value, InvalidOptionError)


def test_longest_valid_queue_name(url: str) -> None:
    assert Queue("x" * 128, url).name == "x" * 128


BAD_OPTIONS = [
    ({"delay": -1}, "delay"),
    ({"delay": float("nan")}, "delay"),
    ({"delay": "soon"}, "delay"),
    ({"priority": 1.5}, "priority"),
    ({"priority": -1}, "priority"),
    ({"priority": 2**21 + 1}, "priority"),
    ({"priority": True}, "priority"),
    ({"attempts": 0}, "attempts"),
    ({"attempts": 2.0}, "attempts"),
    ({"colour": "red"}, "colour"),
    ({"backoff": Backoff("fixed", 1.0, jitter=1.5)}, "backoff.jitter"),
    ({"backoff": {"type": "fixed", "delay": 1, "jitter": -0.1}}, "backoff.jitter"),
    ({"backoff": {"type": "fixed", "delay": -2}}, "backoff.delay"),
    ({"backoff": {"type": "", "delay": 1}}, "backoff.type"),
    ({"backoff": {"kind": "fixed"}}, "backoff"),
    ({"backoff": 5}, "backoff"),
    ({"remove_on_complete": -1}, "remove_on_complete"),
    ({"remove_on_complete": "yes"}, "remove_on_complete"),
    ({"remove_on_fail": KeepJobs(count=-3)}, "remove_on_fail.count"),
    ({"remove_on_fail": KeepJobs(age=-1.0)}, "remove_on_fail.age"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -5}, "timeout"),
    ({"lifo": "yes"}, "lifo"),
    ({"lifo": True, "priority": 3}, "lifo"),
]


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_OPTIONS)])
async def test_invalid_options_raise_and_write_nothing(
        conn: Connection, qname: str, options: dict[str, Any], field: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match=field.replace(".", r"\.")):
        await q.add("j", {"x": 1}, **options)
    await nothing_written(conn, q)


async def test_one_bad_job_in_a_bulk_writes_nothing(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    specs = [JobSpec("j", i) for i in range(10)]
    specs.append(JobSpec("j", 10, opts={"attempts": 0}))
    with pytest.raises(InvalidOptionError, match="attempts"):
        await q.add_bulk(specs)
    await nothing_written(conn, q)
    specs[-1] = JobSpec("j", "x" * (MiB + 1))
    with pytest.raises(PayloadTooLargeError):
        await q.add_bulk(specs)
    await nothing_written(conn, q)


async def test_bad_job_name_and_unserialisable_data(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match="job name"):
        await q.add(7, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await q.add("j", {"when": object()})
    await nothing_written(conn, q)


async def test_oversized_data_refused_with_limit_named(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(PayloadTooLargeError, match=r"data of job 'big'.*limit is 1048576 bytes"):
        await q.add("big", "x" * MiB)  # the JSON quotes push it over 1 MiB
    assert isinstance(PayloadTooLargeError("x"), JobError)
    await nothing_written(conn, q)
    job = await q.add("fits", "x" * (MiB - 2))  # exactly 1 MiB encoded
    assert job.id == "1"
    small = Queue(qname, conn, max_payload=100)
    with pytest.raises(PayloadTooLargeError, match="limit is 100 bytes"):
        await small.add("j", "y" * 100)
    assert (await q.get_job_counts())["waiting"] == 1


async def test_oversized_update_data_progress_and_log(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {"v": 1})
    with pytest.raises(PayloadTooLargeError, match="data of job"):
        await job.update_data("x" * MiB)
    with pytest.raises(PayloadTooLargeError, match="progress of job"):
        await job.update_progress("x" * MiB)
    with pytest.raises(PayloadTooLargeError, match="log line of job"):
        await job.log("x" * (MiB + 1))
    stored = await q.get_job(job.id)
    assert stored is not None and stored.data == {"v": 1} and stored.progress is None
    assert await q.get_job_logs(job.id) == []


async def test_oversized_progress_and_log_inside_processor(conn: Connection,
                                                           qname: str) -> None:
    q = Queue(qname, conn)
    errors: list[str] = []

    async def process(job: Job) -> str:
        for call in (lambda: job.update_progress("p" * MiB), lambda: job.log("l" * (MiB + 1))):
            try:
                await call()
            except PayloadTooLargeError as exc:
                errors.append(str(exc))
        await job.update_progress(1)
        return "survived"

    job = await q.add("j", {})
    async with running(Worker(qname, process, conn)):
        await wait_counts(q, completed=1)
    assert len(errors) == 2
    assert "progress of job" in errors[0] and "1048576" in errors[0]
    assert "log line of job" in errors[1]
    stored = await q.get_job(job.id)
    assert stored is not None and (stored.progress, stored.return_value) == (1, "survived")
    assert await q.get_job_logs(job.id) == []


async def test_oversized_return_value_fails_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {})
    async with running(Worker(qname, lambda job: "r" * MiB, conn)):
        await wait_counts(q, failed=1)
    stored = await q.get_job(job.id)
    assert stored is not None and "return value" in (stored.failed_reason or "")
    assert "PayloadTooLargeError" in (stored.failed_reason or "")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 1.5}, "concurrency"),
    ({"prefetch": -1}, "prefetch"),
    ({"lock_duration": 0.01}, "lock_duration"),
    ({"block_timeout": 0}, "block_timeout"),
    ({"max_stalled_count": -1}, "max_stalled_count"),
])
def test_invalid_worker_options(url: str, qname: str, kwargs: dict[str, Any],
                                field: str) -> None:
    with pytest.raises(InvalidOptionError, match=field):
        Worker(qname, print, url, **kwargs)


def test_invalid_processor_and_connection(url: str, qname: str) -> None:
    with pytest.raises(InvalidOptionError, match="processor"):
        Worker(qname, "not callable", url)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="scheme"):
        Queue(qname, "http://127.0.0.1:1")
    with pytest.raises(InvalidOptionError, match="lock_ms"):
        Consumer(url, qname, lock_ms=10)


async def test_clean_rejects_negative_arguments(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match="grace"):
        await q.clean(grace=-1, limit=10)
    with pytest.raises(InvalidOptionError, match="limit"):
        await q.clean(grace=0, limit=-1)
