"""The public API: ``glidemq.__all__`` is exactly the documented set, and
every name in it resolves (lazily, PEP 562) to a real object."""

from __future__ import annotations

import inspect

import glidemq
import glidemq.errors

EXPECTED = {
    "__version__",
    # engine
    "Connection", "TLSOptions", "Queue", "JobSpec", "Worker",
    "Job", "JobOptions", "JobState", "Backoff", "KeepJobs", "Dedup",
    "FlowProducer", "FlowJob", "DagNode", "JobNode", "chain", "group", "chord",
    "GroupLimits", "MetricsPoint", "JobTemplate", "JobScheduler",
    # events
    "QueueEvents", "QueueEvent", "Added", "Active", "Progress", "Completed", "Failed",
    "Retrying", "Delayed", "Stalled", "Removed", "Retried", "Paused", "Resumed", "PoolStopped",
    "UnknownEvent",
    # errors
    "GlidemqError", "ConfigError", "InvalidOptionError", "InvalidQueueNameError",
    "InvalidJobIdError", "CycleError", "GlidemqConnectionError", "LibraryVersionError",
    "EngineError", "JobNotFoundError", "JobStateError", "QueueNotEmptyError",
    "FlowConflictError", "JobError", "PayloadTooLargeError", "UnrecoverableError",
    "RateLimitedError", "JobTimeoutError", "JobFailedError", "WaitTimeoutError",
    "SandboxError", "HandlerImportError", "SoftTimeoutError", "SupervisorError",
    "ChildCrashedError", "HardTimeoutError",
}


def test_all_is_the_expected_set() -> None:
    assert len(glidemq.__all__) == len(set(glidemq.__all__)), "duplicate names in __all__"
    assert set(glidemq.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in glidemq.__all__:
        value = getattr(glidemq, name)
        assert value is not None, name
        if name != "__version__" and (inspect.isclass(value) or inspect.isfunction(value)):
            assert value.__module__.startswith("glidemq."), (name, value.__module__)
    assert glidemq.__version__ == "0.1.0"
    assert sorted(dir(glidemq)) == sorted(glidemq.__all__)


def test_errors_are_one_tree() -> None:
    for name in glidemq.__all__:
        value = getattr(glidemq, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, glidemq.GlidemqError), name
            assert getattr(glidemq.errors, name) is value


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        glidemq.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("glidemq.NoSuchThing resolved")
