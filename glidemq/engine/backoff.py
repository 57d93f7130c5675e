"""Retry delays: fixed, exponential (with optional jitter) or custom by name."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from glidemq.engine.job import Job
from glidemq.errors import InvalidOptionError, UnrecoverableError

#: A custom strategy gets (attempts made so far, including this one, the error) -> seconds.
BackoffStrategy = Callable[[int, BaseException | None], float]


def retry_delay_ms(
    job: Job,
    error: BaseException | None,
    strategies: Mapping[str, BackoffStrategy] | None = None,
) -> int:
    """Milliseconds until the next attempt, or -1 when no attempt is left.

    The failure being recorded counts as an attempt. An
    :class:`UnrecoverableError` never retries.

    Raises:
        InvalidOptionError: the job names a custom backoff no strategy is registered for.
    """
    if isinstance(error, UnrecoverableError):
        return -1
    made = job.attempts_made + 1
    if made >= job.opts.attempts:
        return -1
    b = job.opts.backoff
    if b is None:
        return 0
    if b.type == "fixed":
        seconds = b.delay
    elif b.type == "exponential":
        seconds = b.delay * (2 ** (made - 1))
    else:
        fn = (strategies or {}).get(b.type)
        if fn is None:
            raise InvalidOptionError(
                f"backoff.type {b.type!r} is not 'fixed', 'exponential' or a registered strategy"
            )
        seconds = float(fn(made, error))
    if b.jitter:
        seconds *= 1.0 - random.random() * b.jitter
    return max(0, int(seconds * 1000))
