"""Workflow helpers that build :class:`~glidemq.engine.flows.FlowJob` trees.

``chain`` runs steps one after another, ``group`` runs jobs in parallel
under a parent that completes by itself, ``chord`` runs a callback after a
group. They only build trees; :meth:`FlowProducer.add` writes them.

Must not: talk to Valkey.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from glidemq.engine.flows import FlowJob
from glidemq.errors import InvalidOptionError

GROUP_NAME = "__group__"


def _jobs(what: str, jobs: Sequence[FlowJob]) -> list[FlowJob]:
    if not jobs:
        raise InvalidOptionError(f"{what} needs at least one FlowJob")
    for j in jobs:
        if not isinstance(j, FlowJob):
            raise InvalidOptionError(f"{what} takes FlowJob, got {j!r}")
    return list(jobs)


def chain(*jobs: FlowJob) -> FlowJob:
    """Run ``jobs`` in order: each waits for the previous one to complete.

    Each step's top job gets the previous step as one more child, so
    ``job.get_children_values()`` in a step holds the previous step's result.
    A step that is itself a tree (a group or chord) keeps its children; they
    do not wait for the previous step, only the step's top job does.

    Returns:
        The last step, to pass to :meth:`FlowProducer.add`.

    Raises:
        InvalidOptionError: no jobs, or not FlowJob.
    """
    steps = _jobs("chain", jobs)
    tree = steps[0]
    for step in steps[1:]:
        tree = msgspec.structs.replace(step, children=[*step.children, tree])
    return tree


def group(*jobs: FlowJob, queue_name: str | None = None) -> FlowJob:
    """Run ``jobs`` in parallel under a parent that completes by itself.

    The parent (name ``"__group__"``, in ``queue_name`` or the first job's
    queue) needs no worker: it completes once every member completed, with
    ``{member ref: value}`` as its return value.

    Raises:
        InvalidOptionError: no jobs, or not FlowJob.
    """
    members = _jobs("group", jobs)
    return FlowJob(GROUP_NAME, queue_name or members[0].queue_name, None,
                   {"auto_complete": True}, members)


def chord(header: FlowJob | Sequence[FlowJob], callback: FlowJob) -> FlowJob:
    """Run ``callback`` once, after every job of ``header`` (a group or a list) completed.

    The callback's ``get_children_values()`` holds every member's result.

    Raises:
        InvalidOptionError: an empty header, or not FlowJob.
    """
    if isinstance(header, FlowJob):
        members = list(header.children) if header.opts.get("auto_complete") else [header]
    else:
        members = _jobs("chord", header)
    members = _jobs("chord", members)
    if not isinstance(callback, FlowJob):
        raise InvalidOptionError(f"chord callback must be a FlowJob, got {callback!r}")
    return msgspec.structs.replace(callback, children=[*callback.children, *members])
