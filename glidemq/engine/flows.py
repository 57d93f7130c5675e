"""Flows: trees and graphs of jobs that wait for each other, across cluster slots.

:class:`FlowProducer` turns a tree (:class:`FlowJob`) or a graph
(:class:`DagNode`) into *nodes* with client-chosen ids ("<flow id>.<path>"),
then writes them with one ``glidemq_add_flow`` call per root (hash tag),
dependents before their dependencies, and a final commit. Every call is
idempotent, so adding the same flow id again finishes an interrupted add.
A node is *held* (stays in waiting-children, field ``fh``) when one of the
jobs waiting for it is written by a later call, so no job can finish before
the jobs it must notify exist; with more than one root, the first node is
held too, as the visible "flow incomplete" marker, until the commit.
The server side and the relay of cross-slot notices: ``glidemq/lua/_flows.lua``
and :mod:`glidemq.engine.deps`.

Must not: run jobs, or keep flow state in the client.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.engine import codec, deps
from glidemq.engine.connection import Connection
from glidemq.engine.job import Job, JobOptions, JobState, make_options, retention_spec
from glidemq.engine.keys import MAX_JOB_ID, QueueKeys, root, validate_job_id, validate_queue_name
from glidemq.engine.queue import DEFAULT_EVENTS_MAXLEN, Queue
from glidemq.errors import CycleError, EngineError, FlowConflictError, InvalidOptionError

if TYPE_CHECKING:
    from glidemq.engine.consumer import Consumer

POLICIES = ("wait", "fail", "ignore")
MAX_FLOW_NODES = 10_000
CALL_NODES = 1000  # nodes per server call (BATCH_CAP in the Lua prelude)
_FLOW_OPTS = frozenset(set(JobOptions.__struct_fields__) - {"depends_on", "parent", "dedup"}
                       | {"job_id", "on_child_failure", "auto_complete"})
_FLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_pack = msgspec.msgpack.Encoder().encode
_json = msgspec.json.Encoder()


class FlowJob(msgspec.Struct, frozen=True):
    """One job of a flow tree; it runs after all its ``children`` completed.

    ``opts`` takes the options of :meth:`Queue.add` except ``dedup`` and
    ``depends_on``, plus:

    * ``job_id``: the job's id (default ``"<flow id>.<path>"``); no ``/``.
    * ``on_child_failure``: what this job failing for good does to its
      parent: ``"wait"`` (default: the parent keeps waiting; a retry of this
      job can still complete it), ``"fail"`` (fail the parent, and so on up)
      or ``"ignore"`` (count it as done).
    * ``auto_complete``: complete without a handler once the children are
      done; the return value is ``{child ref: value}`` (:func:`group` uses it).
    """

    name: str
    queue_name: str
    data: Any = None
    opts: dict[str, Any] = {}
    children: list[FlowJob] = []


class DagNode(msgspec.Struct, frozen=True):
    """One job of a graph for :meth:`FlowProducer.add_dag`.

    ``name`` identifies the node in ``deps`` of other nodes (unique in the
    graph); the node runs after every node named in ``deps`` completed.
    ``opts`` as for :class:`FlowJob`.
    """

    name: str
    queue_name: str
    data: Any = None
    opts: dict[str, Any] = {}
    deps: list[str] = []


class JobNode(msgspec.Struct):
    """A job added by :meth:`FlowProducer.add` and the nodes of its children."""

    job: Job
    children: list[JobNode] = []


@dataclass
class _Node:
    queue: str
    id: str
    name: str
    data: Any
    raw: str
    opts: JobOptions
    policy: str
    auto: bool
    waits: list[str] = field(default_factory=list)
    notifies: list[str] = field(default_factory=list)
    hold: bool = False

    @property
    def ref(self) -> str:
        return f"{self.queue}/{self.id}"

    def wire(self) -> list[Any]:
        o = self.opts
        ext: dict[str, Any] = {}
        if o.group is not None:
            ext["group"] = o.group
        if o.cost != 1:
            ext["cost"] = o.cost
        return [self.queue, self.id, self.name, self.raw, _json.encode(o).decode(),
                int(o.delay * 1000), o.priority, 1 if o.lifo else 0,
                retention_spec(o.remove_on_complete), retention_spec(o.remove_on_fail), ext,
                self.waits, self.notifies, self.policy, 1 if self.hold else 0,
                1 if self.auto else 0]


def _node(name: Any, queue_name: Any, data: Any, opts: Any, default_id: str,
          max_payload: int) -> _Node:
    if not isinstance(name, str):
        raise InvalidOptionError(f"flow job name must be a str, got {name!r}")
    validate_queue_name(queue_name)
    if not isinstance(opts, dict):
        raise InvalidOptionError(f"opts of flow job {name!r} must be a dict, got {opts!r}")
    unknown = set(opts) - _FLOW_OPTS
    if unknown:
        raise InvalidOptionError(
            f"flow job {name!r}: unknown or unsupported option(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(_FLOW_OPTS))}")
    rest = dict(opts)
    job_id = rest.pop("job_id", None)
    if job_id is not None:
        validate_job_id(job_id)
        if "/" in job_id:
            raise InvalidOptionError(f"job_id {job_id!r} of flow job {name!r} contains '/'")
    policy = rest.pop("on_child_failure", "wait")
    if policy not in POLICIES:
        raise InvalidOptionError(
            f"on_child_failure of flow job {name!r} must be one of {', '.join(POLICIES)}, "
            f"got {policy!r}")
    auto = rest.pop("auto_complete", False)
    if not isinstance(auto, bool):
        raise InvalidOptionError(f"auto_complete must be a bool, got {auto!r}")
    jid = job_id or default_id
    if len(jid) > MAX_JOB_ID:
        raise InvalidOptionError(f"flow job id {jid[:40]!r}... is over {MAX_JOB_ID} characters "
                                 "(the tree is too deep for generated ids: pass job_id)")
    raw = codec.encode(data, f"data of flow job {name!r}", max_payload).decode()
    return _Node(queue_name, jid, name, data, raw, make_options(**rest), policy, auto)


def _check_ids(order: list[_Node]) -> None:
    seen: set[str] = set()
    for n in order:
        if n.ref in seen:
            raise InvalidOptionError(f"job {n.ref!r} appears twice in the flow")
        seen.add(n.ref)
        if n.auto and not n.waits:
            raise InvalidOptionError(f"flow job {n.name!r} has auto_complete but no children")
        if len(n.waits) > deps.MAX_DEPENDENCIES or len(n.notifies) > deps.MAX_DEPENDENCIES:
            raise InvalidOptionError(
                f"flow job {n.name!r} has over {deps.MAX_DEPENDENCIES} children or dependents")


def plan_tree(tree: FlowJob, flow_id: str, max_payload: int = codec.DEFAULT_MAX_PAYLOAD
              ) -> tuple[list[_Node], list[list[int]]]:
    """Nodes of a tree, parents before children, and each node's child indexes.

    Raises:
        InvalidOptionError: a bad job, option or id, or more than 10,000 jobs.
    """
    order: list[_Node] = []
    kids: list[list[int]] = []
    pending: deque[tuple[Any, str, int]] = deque([(tree, "0", -1)])
    while pending:
        fj, path, parent = pending.popleft()
        if not isinstance(fj, FlowJob):
            raise InvalidOptionError(f"a flow is made of FlowJob, got {fj!r}")
        n = _node(fj.name, fj.queue_name, fj.data, fj.opts, f"{flow_id}.{path}", max_payload)
        idx = len(order)
        order.append(n)
        kids.append([])
        if parent >= 0:
            p = order[parent]
            p.waits.append(n.ref)
            n.notifies.append(p.ref)
            n.opts = msgspec.structs.replace(n.opts, parent=p.ref)
            kids[parent].append(idx)
        pending.extend((c, f"{path}.{i}", idx) for i, c in enumerate(fj.children))
        if len(order) + len(pending) > MAX_FLOW_NODES:
            raise InvalidOptionError(f"a flow holds at most {MAX_FLOW_NODES} jobs")
    _check_ids(order)
    return order, kids


def plan_dag(nodes: Sequence[DagNode], flow_id: str,
             max_payload: int = codec.DEFAULT_MAX_PAYLOAD) -> list[_Node]:
    """Nodes of a graph, each after every node that waits for it (Kahn's algorithm).

    Raises:
        CycleError: the dependencies form a cycle (naming the nodes on it or after it).
        InvalidOptionError: a bad node, an unknown or repeated name.
    """
    if not nodes or len(nodes) > MAX_FLOW_NODES:
        raise InvalidOptionError(f"add_dag takes 1 to {MAX_FLOW_NODES} nodes, got {len(nodes)}")
    index: dict[str, int] = {}
    for i, dn in enumerate(nodes):
        if not isinstance(dn, DagNode):
            raise InvalidOptionError(f"add_dag takes DagNode, got {dn!r}")
        if dn.name in index:
            raise InvalidOptionError(f"add_dag: node name {dn.name!r} is used twice")
        index[dn.name] = i
    built = [_node(dn.name, dn.queue_name, dn.data, dn.opts, f"{flow_id}.{i}", max_payload)
             for i, dn in enumerate(nodes)]
    needs: list[list[int]] = []
    for dn in nodes:
        missing = [d for d in dn.deps if d not in index]
        if missing:
            raise InvalidOptionError(f"add_dag: node {dn.name!r} depends on unknown {missing}")
        needs.append(list(dict.fromkeys(index[d] for d in dn.deps)))
    dependents: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(needs):
        for j in ds:
            dependents[j].append(i)
    indegree = [len(ds) for ds in needs]
    ready = deque(i for i, d in enumerate(indegree) if d == 0)
    run_order: list[int] = []
    while ready:
        i = ready.popleft()
        run_order.append(i)
        for k in dependents[i]:
            indegree[k] -= 1
            if indegree[k] == 0:
                ready.append(k)
    if len(run_order) < len(nodes):
        stuck = sorted(nodes[i].name for i, d in enumerate(indegree) if d > 0)
        raise CycleError(f"add_dag: the dependencies of {stuck} form a cycle")
    for i, ds in enumerate(needs):
        for j in ds:
            built[i].waits.append(built[j].ref)
            built[j].notifies.append(built[i].ref)
        built[i].opts = msgspec.structs.replace(built[i].opts, depends_on=built[i].waits)
    order = [built[i] for i in reversed(run_order)]
    _check_ids(order)
    return order


def schedule(order: list[_Node]) -> tuple[list[list[_Node]], list[list[_Node]]]:
    """Split nodes into write calls (one per root, in order) and commit calls.

    Sets ``hold`` on every node that a later call's node waits for, and on the
    first node when there is more than one root. The top root commits last.
    """
    groups: dict[str, list[_Node]] = {}
    for n in order:
        groups.setdefault(root(n.queue), []).append(n)
    rank = {r: i for i, r in enumerate(groups)}
    by_ref = {n.ref: n for n in order}
    for n in order:
        mine = rank[root(n.queue)]
        n.hold = any(rank[root(by_ref[w].queue)] > mine for w in n.notifies)
    if len(groups) > 1:
        order[0].hold = True
    held = [[n for n in g if n.hold] for g in groups.values()]
    return _chunks(list(groups.values())), _chunks([*held[1:], held[0]])


def _chunks(groups: list[list[_Node]]) -> list[list[_Node]]:
    return [g[i:i + CALL_NODES] for g in groups for i in range(0, len(g), CALL_NODES)]


async def relay_outbox(consumer: Consumer) -> int:
    """Deliver the queue's pending cross-slot notices to their target slots."""
    return await deps.relay(consumer.connection, consumer.name)


class FlowProducer:
    """Adds flows: a tree of jobs where each parent runs after its children
    (:meth:`add`), or a graph of dependencies (:meth:`add_dag`).

    Children may live in any queue, on any cluster slot. Each root (hash tag)
    costs one server call, plus one commit call when there are several.

    Args:
        connection: a :class:`Connection` or URL.
        events: write ``added`` events.
        events_maxlen: approximate cap of the events streams.
        max_payload: size limit in bytes for each job's data.
    """

    def __init__(self, connection: Connection | str | None = None, *, events: bool = True,
                 events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
                 max_payload: int = codec.DEFAULT_MAX_PAYLOAD) -> None:
        self.connection = Connection.of(connection)
        self.events_maxlen = events_maxlen if events else 0
        self.max_payload = max_payload

    async def __aenter__(self) -> FlowProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()

    async def add(self, flow: FlowJob, *, flow_id: str | None = None) -> JobNode:
        """Add a tree of jobs; every parent waits in waiting-children for its children.

        Args:
            flow: the top job; its children, their children, ... are added with it.
            flow_id: names the flow's generated job ids. Adding the same tree
                with the same flow id again is a no-op for what exists, so it
                finishes an add that was interrupted (a parent left in
                waiting-children with :meth:`incomplete` listing it).

        Returns:
            The tree of added jobs (existing ones as they are, on a re-run).

        Raises:
            InvalidOptionError: a bad job, option, id or flow id (nothing written).
            FlowConflictError: a job id is taken outside this flow.
            PayloadTooLargeError: a job's data is over the size limit.
        """
        fid = self._flow_id(flow_id)
        order, kids = plan_tree(flow, fid, self.max_payload)
        jobs = await self._write(fid, order)
        nodes = [JobNode(j) for j in jobs]
        for i, children in enumerate(kids):
            nodes[i].children = [nodes[k] for k in children]
        return nodes[0]

    async def add_dag(self, nodes: Sequence[DagNode], *, flow_id: str | None = None
                      ) -> dict[str, Job]:
        """Add a graph of jobs; each runs after all the nodes named in its ``deps``.

        A node that several nodes depend on runs once and notifies them all.
        The cycle check runs before anything is written.

        Returns:
            The added jobs by node name.

        Raises:
            CycleError: the dependencies form a cycle.
            InvalidOptionError / FlowConflictError / PayloadTooLargeError: as :meth:`add`.
        """
        fid = self._flow_id(flow_id)
        order = plan_dag(nodes, fid, self.max_payload)
        jobs = await self._write(fid, order)
        return {n.name: j for n, j in zip(order, jobs, strict=True)}

    async def relay(self, queue_name: str) -> int:
        """Deliver a queue's cross-slot notices now (workers do it on every fetch).

        Returns:
            How many notices were delivered.
        """
        return await deps.relay(self.connection, validate_queue_name(queue_name))

    async def incomplete(self, queue_name: str, limit: int = 1000) -> list[tuple[str, str]]:
        """``(job id, flow id)`` of jobs of a queue held by a flow add that did not finish.

        Re-running :meth:`add` (or :meth:`add_dag`) with that flow id and the
        same jobs finishes it.
        """
        keys = QueueKeys(queue_name)
        c = self.connection.client()
        out = []
        for raw in await c.zrange(keys.prefix + "waiting-children", 0, limit - 1):
            held = await c.hget(keys.job(raw.decode()), "fh")
            if held:
                out.append((raw.decode(), held.decode()))
        return out

    def _flow_id(self, flow_id: str | None) -> str:
        if flow_id is None:
            return uuid.uuid4().hex
        if not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
            raise InvalidOptionError(
                f"flow_id must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', got {flow_id!r}")
        return flow_id

    async def _call(self, queue: str, flow_id: str, nodes: list[_Node], commit: list[_Node]
                    ) -> tuple[list[Any], int]:
        try:
            rows, outbox = await self.connection.fcall(
                "glidemq_add_flow", QueueKeys(queue).meta, self.events_maxlen, flow_id,
                _pack([n.wire() for n in nodes]) if nodes else "",
                _pack([n.ref for n in commit]) if commit else "")
        except EngineError as exc:
            if str(exc).startswith("GLIDEMQ_FLOW_CONFLICT"):
                raise FlowConflictError(str(exc).partition(" ")[2]) from None
            raise
        if int(outbox):
            await deps.relay(self.connection, queue)
        return rows, int(outbox)

    async def _write(self, flow_id: str, order: list[_Node]) -> list[Job]:
        writes, commits = schedule(order)
        found: dict[str, tuple[int, str]] = {}
        for group in writes:
            rows, _ = await self._call(group[0].queue, flow_id, group, [])
            for i, n in enumerate(group):
                found[n.ref] = (int(rows[4 * i + 2]), rows[4 * i + 3].decode())
        for commit in commits:
            await self._call(commit[0].queue, flow_id, [], commit)
        queues: dict[str, Queue] = {}
        jobs = []
        for n in order:
            q = queues.get(n.queue)
            if q is None:
                q = queues[n.queue] = Queue(n.queue, self.connection,
                                            events_maxlen=self.events_maxlen,
                                            max_payload=self.max_payload)
            ts, state = found[n.ref]
            if n.hold:  # the commit may have released it
                state = (await q.get_job_state(n.id)) or state
            jobs.append(Job(id=n.id, name=n.name, data=n.data, opts=n.opts, timestamp=ts,
                            state=JobState(state) if state else None,
                            queue_name=n.queue)._bind(q))
        return jobs
