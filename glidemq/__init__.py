"""glidemq: a job queue and multiprocess worker framework on Valkey.

The public API is re-exported here and loaded lazily (PEP 562), so that a
sandboxed child running ``python -m glidemq.sandbox`` imports neither the
engine nor valkey-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Connection": "glidemq.engine.connection",
    "TLSOptions": "glidemq.engine.connection",
    "Queue": "glidemq.engine.queue",
    "JobSpec": "glidemq.engine.queue",
    "Worker": "glidemq.engine.worker",
    "Job": "glidemq.engine.job",
    "JobOptions": "glidemq.engine.job",
    "JobState": "glidemq.engine.job",
    "Backoff": "glidemq.engine.job",
    "KeepJobs": "glidemq.engine.job",
    "Dedup": "glidemq.engine.job",
    "FlowProducer": "glidemq.engine.flows",
    "FlowJob": "glidemq.engine.flows",
    "DagNode": "glidemq.engine.flows",
    "JobNode": "glidemq.engine.flows",
    "chain": "glidemq.engine.workflows",
    "group": "glidemq.engine.workflows",
    "chord": "glidemq.engine.workflows",
    "GroupLimits": "glidemq.engine.limits",
    "MetricsPoint": "glidemq.engine.metrics",
    "QueueEvents": "glidemq.engine.events",
    "QueueEvent": "glidemq.engine.events",
    "Added": "glidemq.engine.events",
    "Active": "glidemq.engine.events",
    "Progress": "glidemq.engine.events",
    "Completed": "glidemq.engine.events",
    "Failed": "glidemq.engine.events",
    "Retrying": "glidemq.engine.events",
    "Delayed": "glidemq.engine.events",
    "Stalled": "glidemq.engine.events",
    "Removed": "glidemq.engine.events",
    "Retried": "glidemq.engine.events",
    "Paused": "glidemq.engine.events",
    "Resumed": "glidemq.engine.events",
    "PoolStopped": "glidemq.engine.events",
    "UnknownEvent": "glidemq.engine.events",
    "JobTemplate": "glidemq.engine.schedulers",
    "JobScheduler": "glidemq.engine.schedulers",
    "GlidemqError": "glidemq.errors",
    "ConfigError": "glidemq.errors",
    "InvalidOptionError": "glidemq.errors",
    "InvalidQueueNameError": "glidemq.errors",
    "InvalidJobIdError": "glidemq.errors",
    "CycleError": "glidemq.errors",
    "GlidemqConnectionError": "glidemq.errors",
    "LibraryVersionError": "glidemq.errors",
    "EngineError": "glidemq.errors",
    "JobNotFoundError": "glidemq.errors",
    "JobStateError": "glidemq.errors",
    "QueueNotEmptyError": "glidemq.errors",
    "FlowConflictError": "glidemq.errors",
    "JobError": "glidemq.errors",
    "PayloadTooLargeError": "glidemq.errors",
    "UnrecoverableError": "glidemq.errors",
    "RateLimitedError": "glidemq.errors",
    "JobTimeoutError": "glidemq.errors",
    "JobFailedError": "glidemq.errors",
    "WaitTimeoutError": "glidemq.errors",
    "SandboxError": "glidemq.errors",
    "HandlerImportError": "glidemq.errors",
    "SoftTimeoutError": "glidemq.errors",
    "SupervisorError": "glidemq.errors",
    "ChildCrashedError": "glidemq.errors",
    "HardTimeoutError": "glidemq.errors",
}

__all__ = ("__version__", *_EXPORTS)

if TYPE_CHECKING:
    from glidemq.engine.connection import Connection, TLSOptions  # noqa: F401
    from glidemq.engine.events import (  # noqa: F401
        Active,
        Added,
        Completed,
        Delayed,
        Failed,
        Paused,
        PoolStopped,
        Progress,
        QueueEvent,
        QueueEvents,
        Removed,
        Resumed,
        Retried,
        Retrying,
        Stalled,
        UnknownEvent,
    )
    from glidemq.engine.flows import DagNode, FlowJob, FlowProducer, JobNode  # noqa: F401
    from glidemq.engine.job import (  # noqa: F401
        Backoff,
        Dedup,
        Job,
        JobOptions,
        JobState,
        KeepJobs,
    )
    from glidemq.engine.limits import GroupLimits  # noqa: F401
    from glidemq.engine.metrics import MetricsPoint  # noqa: F401
    from glidemq.engine.queue import JobSpec, Queue  # noqa: F401
    from glidemq.engine.schedulers import JobScheduler, JobTemplate  # noqa: F401
    from glidemq.engine.worker import Worker  # noqa: F401
    from glidemq.engine.workflows import chain, chord, group  # noqa: F401
    from glidemq.errors import *  # noqa: F403


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glidemq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
