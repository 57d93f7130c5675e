"""Find the user's handler from its ``"package.module:function"`` name.

The attribute after the colon (dots allowed, e.g. ``"app.jobs:Tasks.run"``)
is either one callable that receives every job, or a mapping of job name to
callable. Callables may be sync or async. All checks happen once at boot so a
wrong name stops the pool at once instead of failing every job.

Must not: run handler code beyond importing its module, or know about pipes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from glidemq.errors import HandlerImportError

HandlerFn = Callable[[Any], Any]
Handler = HandlerFn | Mapping[str, HandlerFn]


def load_handler(spec: str) -> Handler:
    """Import the module of ``spec`` and return the handler it names.

    Raises:
        HandlerImportError: the name is malformed, the module fails to import
            (the cause is chained), the attribute is missing, or it is neither
            a callable nor a mapping of job names to callables.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise HandlerImportError(
            f"handler {spec!r}: expected 'package.module:function' (one colon)"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerImportError(
            f"handler {spec!r}: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise HandlerImportError(
                f"handler {spec!r}: {part!r} not found in {module_name!r}"
            ) from exc
    if isinstance(obj, Mapping):
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not callable(v)]
        if bad or not obj:
            raise HandlerImportError(
                f"handler {spec!r}: expected a non-empty mapping of job name to callable, "
                f"bad keys: {bad!r}"
            )
        return dict(obj)
    if not callable(obj):
        raise HandlerImportError(
            f"handler {spec!r}: got {type(obj).__name__}, expected a callable "
            "or a mapping of job name to callable"
        )
    return obj  # type: ignore[no-any-return]


def resolve(handler: Handler, job_name: str) -> HandlerFn:
    """Pick the callable for one job.

    Raises:
        LookupError: ``handler`` is a mapping without ``job_name``; that job
            fails (and may be retried by a newer deployment that knows it).
    """
    if isinstance(handler, Mapping):
        try:
            return handler[job_name]
        except KeyError:
            known = ", ".join(sorted(handler))
            raise LookupError(f"no handler for job name {job_name!r} (known: {known})") from None
    return handler


def is_async(fn: HandlerFn) -> bool:
    """True for ``async def`` functions (also behind ``functools.partial``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async __call__ of a class instance
    )
