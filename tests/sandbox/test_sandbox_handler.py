"""Handler import by "package.module:function": callables, mappings, clear errors."""

from __future__ import annotations

import functools

import pytest

from glidemq.errors import HandlerImportError
from glidemq.sandbox.handler import is_async, load_handler, resolve
from tests.handlers import basic


def test_loads_a_function() -> None:
    assert load_handler("tests.handlers.basic:noop") is basic.noop


def test_loads_a_mapping_by_job_name() -> None:
    handler = load_handler("tests.handlers.basic:by_name")
    assert resolve(handler, "echo") is basic.echo
    with pytest.raises(LookupError, match="'nope'.*boom, echo, noop"):
        resolve(handler, "nope")


def test_dotted_attribute() -> None:
    assert load_handler("tests.handlers.basic:by_name.get") == basic.by_name.get


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("tests.handlers.basic", "one colon"),
        (":noop", "one colon"),
        ("tests.handlers.basic:", "one colon"),
        ("tests.handlers.nope:noop", "ModuleNotFoundError"),
        ("tests.handlers.broken:noop", "RuntimeError: this module cannot be imported"),
        ("tests.handlers.basic:missing", "'missing' not found"),
        ("tests.handlers.basic:_hoard", "got list, expected a callable"),
    ],
)
def test_import_errors_name_the_problem(spec: str, match: str) -> None:
    with pytest.raises(HandlerImportError, match=match):
        load_handler(spec)


def test_is_async() -> None:
    assert is_async(basic.async_echo)
    assert is_async(functools.partial(basic.async_echo))
    assert not is_async(basic.echo)

    class Callable:
        async def __call__(self, job: object) -> None:
            return None

    assert is_async(Callable())
