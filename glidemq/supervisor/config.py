"""The supervisor's typed configuration and the one place it is merged.

Owns the Struct tree parsed from ``glidemq.toml`` and :func:`load_config`, which
merges defaults < file < ``GLIDEMQ_*`` environment < command-line overrides and
checks what a schema cannot (min ≤ max, unique queue names, handler shape).
The result is passed down explicitly; nothing here is a global.

Environment overrides: ``GLIDEMQ_<SECTION>_<KEY>`` for every scalar key of the
``[valkey]``, ``[embedded]`` and ``[supervisor]`` tables (see
:func:`env_var_names`), e.g. ``GLIDEMQ_VALKEY_URL``,
``GLIDEMQ_SUPERVISOR_DRAIN_TIMEOUT``, ``GLIDEMQ_SUPERVISOR_LOG_LEVEL``,
``GLIDEMQ_SUPERVISOR_HEALTH_PORT``. An empty value counts as unset. Queues are
configured in the file only.

Must not: open connections, import user handler code, or read ``os.environ``
(the caller passes the environment in).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from glidemq.engine.keys import root as queue_root
from glidemq.engine.keys import validate_queue_name as _engine_validate_queue_name
from glidemq.errors import ConfigFileError, ConfigValueError, InvalidQueueNameError

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HANDLER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# The schemes glidemq.engine.connection.Connection accepts (kept in step by a test).
_URL_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "valkey+cluster", "valkeys+cluster",
                "redis+cluster", "rediss+cluster")


def validate_queue_name(name: str) -> str:
    """The engine's queue-name rule (one rule for producers and the supervisor).

    Raises:
        InvalidQueueNameError: see :func:`glidemq.engine.keys.validate_queue_name`.
    """
    return _engine_validate_queue_name(name)


class Secret(str):
    """A string whose repr hides it, so a logged Config never shows a password."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Common Struct options: unknown keys are errors, keyword-only, immutable."""


class TlsConfig(_Base, kw_only=True, frozen=True):
    enabled: bool = True  # writing a [valkey.tls] table means "use TLS" unless said otherwise
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class ValkeyConfig(_Base, kw_only=True, frozen=True):
    url: str | None = None  # absent -> the supervisor starts an embedded valkey-server
    cluster: bool = False
    username: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    password: Secret | None = None  # resolved from password_env at load; never set in the file


class EmbeddedConfig(_Base, kw_only=True, frozen=True):
    data_dir: str = ".glidemq-data"
    port: Port = 0  # 0 = pick a free port


class SupervisorConfig(_Base, kw_only=True, frozen=True):
    drain_timeout: Positive = 30.0
    health_port: Port = 0  # 0 = no health endpoint
    health_host: str = "127.0.0.1"
    log_level: str = "INFO"
    restart_intensity: Annotated[int, msgspec.Meta(ge=0)] = 5  # R restarts ...
    restart_period: Positive = 60.0  # ... within T seconds stop the pool
    restart_backoff_max: Positive = 30.0


class BackoffConfig(_Base, kw_only=True, frozen=True):
    type: Literal["fixed", "exponential"]
    delay: NonNegative
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0


class RlimitsConfig(_Base, kw_only=True, frozen=True):
    address_space_mb: Count | None = None
    cpu_seconds: Count | None = None
    open_files: Count | None = None


class AutoscaleConfig(_Base, kw_only=True, frozen=True):
    enabled: bool = True
    target_backlog_per_child: Positive = 4.0
    scale_up_cooldown: NonNegative = 2.0
    scale_down_window: NonNegative = 30.0
    interval: Positive = 1.0
    cpu_high: Annotated[float, msgspec.Meta(gt=0, le=100)] = 90.0
    min_available_mb: NonNegative = 256.0


class QueueConfig(_Base, kw_only=True, frozen=True):
    name: str
    handler: str  # "package.module:function"
    min_children: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_children: Count = msgspec.field(default_factory=lambda: os.cpu_count() or 1)
    prefetch: Annotated[int, msgspec.Meta(ge=0)] = 1
    batch: Count = 8
    hard_timeout: Positive | None = None
    hard_timeout_grace: NonNegative = 5.0
    soft_timeout: Positive | None = None
    max_jobs_per_child: Count | None = None
    max_rss_mb: Count | None = None
    attempts: Count = 1
    backoff: BackoffConfig | None = None
    dead_letter_queue: str | None = None
    lock_duration: Positive = 30.0
    max_stalled_count: Annotated[int, msgspec.Meta(ge=0)] = 1
    events_maxlen: Annotated[int, msgspec.Meta(ge=0)] = 10_000  # events stream cap; 0 = off
    env: dict[str, str] = msgspec.field(default_factory=dict)
    rlimits: RlimitsConfig | None = None
    autoscale: AutoscaleConfig = msgspec.field(default_factory=AutoscaleConfig)


class Config(_Base, kw_only=True, frozen=True):
    valkey: ValkeyConfig = msgspec.field(default_factory=ValkeyConfig)
    embedded: EmbeddedConfig = msgspec.field(default_factory=EmbeddedConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    queues: Annotated[list[QueueConfig], msgspec.Meta(min_length=1)]


_ENV_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "valkey": ValkeyConfig, "embedded": EmbeddedConfig, "supervisor": SupervisorConfig,
}  # fmt: skip
_NOT_FROM_OUTSIDE = {"valkey.password", "valkey.tls"}
_BOOL_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}


def env_var_names() -> dict[str, str]:
    """Map each supported ``GLIDEMQ_*`` variable to the key it overrides."""
    return {
        f"GLIDEMQ_{section}_{f.name}".upper(): f"{section}.{f.name}"
        for section, cls in _ENV_SECTIONS.items()
        for f in msgspec.structs.fields(cls)
        if f"{section}.{f.name}" not in _NOT_FROM_OUTSIDE
    }


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    cli_overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the one Config: defaults < TOML file < ``GLIDEMQ_*`` env < CLI.

    Args:
        path: the TOML file, or None for defaults only (queues are then missing).
        env: the environment to read overrides and ``password_env`` from.
        cli_overrides: dotted key (``"supervisor.drain_timeout"``) to value;
            None values mean "flag not given".

    Raises:
        ConfigFileError: the file is missing, unreadable or not TOML.
        ConfigValueError: a key is unknown, missing, mistyped or out of range;
            the message names the key path, the value and what was expected.
    """
    raw = _read_toml(path) if path is not None else {}
    where = f"{os.fspath(path)}: " if path is not None else ""
    sources: dict[str, str] = {}
    for var, key in env_var_names().items():
        if env.get(var):
            _overlay(raw, key, env[var], f"environment variable {var}", sources)
    for key, value in (cli_overrides or {}).items():
        if value is not None:
            _overlay(raw, key, value, "the command line", sources)
    if "password" in _get(raw, ["valkey"], {}):
        raise ConfigValueError(
            f"{where}valkey.password: do not put the password in the file; "
            "name the environment variable holding it in valkey.password_env",
            key="valkey.password",
        )
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        key, message = _explain(str(exc), raw)
        origin = f" (from {sources[key]})" if key in sources else ""
        raise ConfigValueError(f"{where}{message}{origin}", key=key) from None
    try:
        return _check(config, raw, env)
    except ConfigValueError as exc:
        origin = f" (from {sources[exc.key]})" if exc.key in sources else ""
        raise ConfigValueError(f"{where}{exc}{origin}", key=exc.key) from None


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {os.fspath(path)}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{os.fspath(path)}: not valid TOML: {exc}") from exc


def _overlay(
    raw: dict[str, Any], key: str, value: object, origin: str, sources: dict[str, str]
) -> None:
    """Put one override into the raw tree, typed by its field, naming its origin on error."""
    section, name = key.split(".", 1)
    fields = {f.name: f for f in msgspec.structs.fields(_ENV_SECTIONS[section])}
    if name not in fields:
        raise ConfigValueError(f"{key}: unknown key (from {origin})", key=key)
    field_type = fields[name].type
    if isinstance(value, str) and _base_type(field_type) is bool:
        value = _BOOL_WORDS.get(value.lower(), value)
    try:
        typed = msgspec.convert(value, field_type, strict=False)
    except msgspec.ValidationError as exc:
        expected = str(exc).replace("Expected", "expected", 1)
        raise ConfigValueError(f"{key} = {value!r} (from {origin}): {expected}", key=key) from None
    table = raw.setdefault(section, {})
    if isinstance(table, dict):  # a non-table here is reported by the schema check
        table[name] = typed
        sources[key] = origin


def _base_type(tp: Any) -> Any:
    """Strip Annotated and Optional, so an override knows it targets bool/int/float/str."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


_MISSING = object()
_SEGMENT = re.compile(r"\[(\d+|\.\.\.)\]|([^.\[\]]+)")


def _segments(key: str) -> list[str | int]:
    return [int(i) if i.isdigit() else (i or n) for i, n in _SEGMENT.findall(key)]


def _get(raw: Any, segments: list[str | int], default: Any = _MISSING) -> Any:
    for seg in segments:
        try:
            raw = raw[seg]
        except (KeyError, IndexError, TypeError):
            return default
    return raw


def _struct_at(segments: list[str | int]) -> Any:
    """Follow a key path through the Struct types, to list valid keys on a typo."""
    tp: Any = Config
    for seg in segments:
        tp = _base_type(tp)
        if isinstance(seg, int) or seg == "...":
            tp = typing.get_args(tp)[-1]
        else:
            tp = {f.name: f.type for f in msgspec.structs.fields(tp)}[seg]
    return _base_type(tp)


def _explain(message: str, raw: dict[str, Any]) -> tuple[str, str]:
    """Turn a msgspec ValidationError into (key path, message naming key, value, expectation)."""
    what, _, at = message.partition(" - at `$")
    key = at.rstrip("`").lstrip(".")
    if m := re.fullmatch(r"Object contains unknown field `(.+)`", what):
        known = [f.name for f in msgspec.structs.fields(_struct_at(_segments(key)))]
        known = [k for k in known if f"{key}.{k}".lstrip(".") not in _NOT_FROM_OUTSIDE]
        key = f"{key}.{m[1]}".lstrip(".")
        close = difflib.get_close_matches(m[1], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(known)}"
        return key, f"{key}: unknown key; {hint}"
    if m := re.fullmatch(r"Object missing required field `(.+)`", what):
        key = f"{key}.{m[1]}".lstrip(".")
        return key, f"{key}: required key is missing"
    value = _get(raw, _segments(key))
    shown = "" if value is _MISSING else f" = {value!r}"
    expected = what.replace("Expected", "expected", 1)
    if what.startswith("Invalid enum value"):
        choices = typing.get_args(_struct_at(_segments(key)))
        expected = "expected one of " + ", ".join(map(repr, choices))
    return key, f"{key or 'config'}{shown}: {expected}"


def _check(config: Config, raw: dict[str, Any], env: Mapping[str, str]) -> Config:
    """The rules a schema cannot say; returns the config with derived values filled in."""
    valkey, sup = config.valkey, config.supervisor
    if valkey.url is not None and valkey.url.partition("://")[0] not in _URL_SCHEMES:
        _fail("valkey.url", valkey.url, f"a URL with scheme {'/'.join(_URL_SCHEMES)}://")
    if valkey.url is None and valkey.cluster:
        _fail("valkey.cluster", True, "valkey.url to be set (the embedded server is standalone)")
    tls = valkey.tls
    if tls is not None and (tls.cert_file is None) != (tls.key_file is None):
        _fail("valkey.tls.cert_file", tls.cert_file, "cert_file and key_file set together")
    if valkey.password_env is not None:
        if not env.get(valkey.password_env):
            _fail("valkey.password_env", valkey.password_env, "the name of a set env variable")
        valkey = msgspec.structs.replace(valkey, password=Secret(env[valkey.password_env]))
    if sup.log_level.upper() not in LOG_LEVELS:
        _fail("supervisor.log_level", sup.log_level, f"one of {', '.join(LOG_LEVELS)}")
    sup = msgspec.structs.replace(sup, log_level=sup.log_level.upper())
    seen: set[str] = set()
    queues = []
    for i, q in enumerate(config.queues):
        key = f"queues[{i}]"
        for field, name in (("name", q.name), ("dead_letter_queue", q.dead_letter_queue)):
            try:
                if name is not None:
                    validate_queue_name(name)
            except InvalidQueueNameError as exc:
                _fail(f"{key}.{field}", name, f"a valid queue name ({exc})")
        if q.name in seen:
            _fail(f"{key}.name", q.name, "a queue name not used by another [[queues]] entry")
        seen.add(q.name)
        if q.dead_letter_queue == q.name:
            _fail(f"{key}.dead_letter_queue", q.name, "a queue other than the queue itself")
        dlq = q.dead_letter_queue
        if dlq is not None and queue_root(dlq) != queue_root(q.name):
            _fail(f"{key}.dead_letter_queue", q.dead_letter_queue,
                  f"a name sharing the queue's root, e.g. '{queue_root(q.name)}.dead' (the move "
                  "into the dead-letter queue is atomic only on one cluster slot)")
        if not _HANDLER_RE.match(q.handler):
            _fail(f"{key}.handler", q.handler, "'package.module:function'")
        if "max_children" not in _get(raw, ["queues", i], {}) and q.max_children < q.min_children:
            q = msgspec.structs.replace(q, max_children=q.min_children)  # the cpu default yields
        if q.min_children > q.max_children:
            _fail(f"{key}.min_children", q.min_children, f"<= max_children ({q.max_children})")
        if q.soft_timeout and q.hard_timeout and q.soft_timeout >= q.hard_timeout:
            _fail(f"{key}.soft_timeout", q.soft_timeout, f"< hard_timeout ({q.hard_timeout})")
        for name in q.env:
            if not name or "=" in name or "\0" in name:
                _fail(f"{key}.env", name, "environment variable names without '=' or NUL")
        queues.append(q)
    return msgspec.structs.replace(config, valkey=valkey, supervisor=sup, queues=queues)


def _fail(key: str, value: object, expected: str) -> typing.NoReturn:
    raise ConfigValueError(f"{key} = {value!r}: expected {expected}", key=key)
