"""Config loading, merging and error messages; the CLI that drives them."""

from __future__ import annotations

import os
import sys
import textwrap
import types
from pathlib import Path

import msgspec
import pytest

from glidemq.errors import ConfigError, ConfigFileError, ConfigValueError, InvalidQueueNameError
from glidemq.supervisor import cli
from glidemq.supervisor.config import (
    Config,
    QueueConfig,
    env_var_names,
    load_config,
    validate_queue_name,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "glidemq.toml"
QUEUE = '[[queues]]\nname = "q"\nhandler = "pkg.mod:fn"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "glidemq.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **cli: object) -> Config:
    return load_config(write(tmp_path, text), env or {}, cli)


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE, {}, {})
    assert config.valkey.url is None  # embedded
    assert [q.name for q in config.queues] == ["hashing"]
    assert config.queues[0].handler == "examples.handlers:hash_work"


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, QUEUE)
    q = config.queues[0]
    assert (config.embedded.data_dir, config.embedded.port) == (".glidemq-data", 0)
    assert (config.supervisor.drain_timeout, config.supervisor.health_port) == (30.0, 0)
    assert config.supervisor.health_host == "127.0.0.1"
    assert (q.min_children, q.max_children) == (1, max(1, os.cpu_count() or 1))
    assert (q.prefetch, q.batch, q.attempts, q.lock_duration, q.max_stalled_count) == (
        1, 8, 1, 30.0, 1,
    )  # fmt: skip
    assert q.hard_timeout is None and q.backoff is None and q.rlimits is None
    assert q.autoscale.enabled and q.autoscale.target_backlog_per_child == 4.0


def test_struct_round_trip(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, {}, {})
    assert msgspec.convert(msgspec.to_builtins(config), Config) == config
    assert msgspec.json.decode(msgspec.json.encode(config), type=Config) == config


def test_precedence_defaults_file_env_cli(tmp_path: Path) -> None:
    text = QUEUE + "[supervisor]\ndrain_timeout = 10\nlog_level = 'warning'\n"
    assert load(tmp_path, text).supervisor.drain_timeout == 10.0
    env = {"GLIDEMQ_SUPERVISOR_DRAIN_TIMEOUT": "20", "GLIDEMQ_VALKEY_URL": "valkey://h:1"}
    config = load(tmp_path, text, env)
    assert config.supervisor.drain_timeout == 20.0 and config.valkey.url == "valkey://h:1"
    assert config.supervisor.log_level == "WARNING"
    cli_over = {"supervisor.drain_timeout": 3.0, "supervisor.log_level": None}
    config = load_config(write(tmp_path, text), env, cli_over)
    assert config.supervisor.drain_timeout == 3.0  # flag beats env
    assert config.supervisor.log_level == "WARNING"  # a flag not given changes nothing


def test_env_empty_means_unset_and_bools(tmp_path: Path) -> None:
    env = {"GLIDEMQ_VALKEY_URL": "", "GLIDEMQ_VALKEY_CLUSTER": "yes"}
    with pytest.raises(ConfigValueError, match="valkey.cluster"):
        load(tmp_path, QUEUE, env)  # cluster without url
    env["GLIDEMQ_VALKEY_URL"] = "valkey://h:1"
    assert load(tmp_path, QUEUE, env).valkey.cluster is True


def test_env_var_names_documented() -> None:
    names = env_var_names()
    for var in ("GLIDEMQ_VALKEY_URL", "GLIDEMQ_SUPERVISOR_DRAIN_TIMEOUT",
                "GLIDEMQ_SUPERVISOR_LOG_LEVEL", "GLIDEMQ_SUPERVISOR_HEALTH_PORT",
                "GLIDEMQ_EMBEDDED_DATA_DIR"):  # fmt: skip
        assert var in names
    assert "GLIDEMQ_VALKEY_PASSWORD" not in names


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (QUEUE + "max_children = 'four'\n", {},
         "queues[0].max_children = 'four': expected `int`, got `str`"),
        (QUEUE + "batch = 0\n", {}, "queues[0].batch = 0: expected `int` >= 1"),
        (QUEUE + "max_childs = 2\n", {}, "did you mean 'max_children'?"),
        (QUEUE + "[queues.autoscale]\ncpu_hi = 1\n", {}, "queues[0].autoscale.cpu_hi: unknown key"),
        (QUEUE + "backoff = {type = 'linear', delay = 1}\n", {},
         "queues[0].backoff.type = 'linear': expected one of 'fixed', 'exponential'"),
        (QUEUE + "backoff = {type = 'fixed'}\n", {}, "queues[0].backoff.delay: required key"),
        ('[[queues]]\nname = "q"\n', {}, "queues[0].handler: required key is missing"),
        ("[supervisor]\n", {}, "queues: required key is missing"),
        ("queues = []\n", {}, "expected `array` of length >= 1"),
        ("[nope]\n" + QUEUE, {}, "nope: unknown key; expected one of: valkey, embedded"),
        (QUEUE + "env = {A = 1}\n", {}, "queues[0].env[...]"),
        (QUEUE, {"GLIDEMQ_SUPERVISOR_HEALTH_PORT": "70000"},
         "supervisor.health_port = '70000' (from environment variable "
         "GLIDEMQ_SUPERVISOR_HEALTH_PORT)"),
        (QUEUE, {"GLIDEMQ_SUPERVISOR_DRAIN_TIMEOUT": "soon"},
         "(from environment variable GLIDEMQ_SUPERVISOR_DRAIN_TIMEOUT): expected `float`"),
        (QUEUE + "min_children = 3\nmax_children = 2\n", {},
         "queues[0].min_children = 3: expected <= max_children (2)"),
        (QUEUE + QUEUE, {}, "queues[1].name = 'q': expected a queue name not used"),
        (QUEUE.replace('"q"', '"a:b"'), {}, "queues[0].name = 'a:b': expected a valid queue name"),
        (QUEUE + "dead_letter_queue = 'q'\n", {}, "queues[0].dead_letter_queue"),
        (QUEUE + "dead_letter_queue = 'x y'\n", {}, "queues[0].dead_letter_queue = 'x y'"),
        (QUEUE.replace("pkg.mod:fn", "pkg.mod.fn"), {}, "queues[0].handler = 'pkg.mod.fn'"),
        (QUEUE + "soft_timeout = 5\nhard_timeout = 5\n", {}, "queues[0].soft_timeout = 5.0"),
        (QUEUE + "hard_timeout = -1\n", {}, "queues[0].hard_timeout = -1: expected `float` > 0"),
        ("[supervisor]\nlog_level = 'loud'\n" + QUEUE, {}, "supervisor.log_level = 'loud'"),
        ("[valkey]\nurl = 'http://x'\n" + QUEUE, {}, "valkey.url = 'http://x'"),
        ("[valkey]\npassword_env = 'VK_PW'\n" + QUEUE, {}, "valkey.password_env = 'VK_PW'"),
        ("[valkey]\npassword = 'hunter2'\n" + QUEUE, {}, "valkey.password: do not put"),
        ("[valkey]\nurl = 'rediss://h'\n[valkey.tls]\ncert_file = 'c.pem'\n" + QUEUE, {},
         "valkey.tls.cert_file"),
    ],
)  # fmt: skip
def test_errors_name_key_value_and_expectation(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigValueError) as info:
        load(tmp_path, text, env)
    assert expected in str(info.value)
    assert info.value.key and info.value.key in str(info.value)
    if not env:  # a value from the file names the file too
        assert str(info.value).startswith(f"{tmp_path / 'glidemq.toml'}: ")


def test_cli_override_error_names_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match=r"drain_timeout = -2.0 \(from the command line\)"):
        load(tmp_path, QUEUE, None, **{"supervisor.drain_timeout": -2.0})


def test_cpu_default_for_max_yields_to_min(tmp_path: Path) -> None:
    big = (os.cpu_count() or 1) + 3
    assert load(tmp_path, QUEUE + f"min_children = {big}\n").queues[0].max_children == big


def test_full_queue_table(tmp_path: Path) -> None:
    text = (
        QUEUE
        + """
        hard_timeout = 10
        soft_timeout = 8
        backoff = { type = "exponential", delay = 0.5, jitter = 0.1 }
        env = { MODE = "fast" }
        rlimits = { address_space_mb = 2048, open_files = 256 }
        autoscale = { enabled = false, interval = 0.5 }
    """
    )
    q: QueueConfig = load(tmp_path, textwrap.dedent(text)).queues[0]
    assert q.backoff is not None and q.backoff.type == "exponential" and q.backoff.jitter == 0.1
    assert q.env == {"MODE": "fast"} and q.rlimits is not None and q.rlimits.cpu_seconds is None
    assert not q.autoscale.enabled and q.autoscale.interval == 0.5


def test_password_resolved_and_hidden(tmp_path: Path) -> None:
    text = "[valkey]\nurl = 'valkey://h:1'\nusername = 'u'\npassword_env = 'VK_PW'\n" + QUEUE
    config = load(tmp_path, text, {"VK_PW": "hunter2"})
    assert config.valkey.password == "hunter2"
    assert "hunter2" not in repr(config)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {}, {})
    with pytest.raises(ConfigFileError, match="not valid TOML.*line 1"):
        load(tmp_path, "[[queues]\n")


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "a:b", "a b", "tab\t", "nul\x00", "x" * 129])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(InvalidQueueNameError):
        validate_queue_name(name)


@pytest.mark.parametrize("name", ["q", "emails.high-priority", "ü", "x" * 128])
def test_good_queue_names(name: str) -> None:
    assert validate_queue_name(name) == name


# --- the CLI --------------------------------------------------------------------
def test_cli_check_config_ok_and_bad_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myhandlers.py").write_text("def work(job):\n    return 1\nNOT_CALLABLE = 3\n")
    path = write(tmp_path, QUEUE.replace("pkg.mod:fn", "myhandlers:work"))
    assert cli.main(["--config", str(path), "--check-config"]) == 0
    assert "ok (1 queue(s): q)" in capsys.readouterr().out
    for handler, why in [("myhandlers:nope", "AttributeError"), ("nomod:work", "nomod"),
                         ("myhandlers:NOT_CALLABLE", "not callable")]:  # fmt: skip
        write(tmp_path, QUEUE.replace("pkg.mod:fn", handler))
        assert cli.main(["--config", str(path), "--check-config"]) == 2
        err = capsys.readouterr().err
        assert "queues[0].handler" in err and why in err


def test_cli_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(tmp_path / "none.toml"), "--check-config"]) == 2
    path = write(tmp_path, QUEUE)
    assert cli.main(["--config", str(path), "--drain-timeout", "0", "--check-config"]) == 2
    assert "supervisor.drain_timeout" in capsys.readouterr().err
    assert cli.main(["--config", str(path), "--log-level", "loud"]) == 2  # argparse usage error


def test_cli_runs_supervisor_with_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Config] = []
    fake = types.ModuleType("glidemq.supervisor.supervisor")

    def run(config: Config, reload: object = None) -> int:
        seen.append(config)
        return 0

    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "glidemq.supervisor.supervisor", fake)
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    monkeypatch.setenv("GLIDEMQ_SUPERVISOR_HEALTH_PORT", "9100")
    argv = ["--config", str(write(tmp_path, QUEUE)), "--log-level", "debug",
            "--drain-timeout", "7", "--valkey-url", "valkey://h:6379"]  # fmt: skip
    assert cli.main(argv) == 0
    (config,) = seen
    assert config.supervisor.log_level == "DEBUG" and config.supervisor.drain_timeout == 7.0
    assert config.supervisor.health_port == 9100 and config.valkey.url == "valkey://h:6379"


def test_cli_runtime_errors_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    fake = types.ModuleType("glidemq.supervisor.supervisor")

    def run(config: Config, reload: object = None) -> None:
        raise ConfigError("late") if config.queues[0].batch == 2 else RuntimeError("boom")

    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "glidemq.supervisor.supervisor", fake)
    assert cli.main(["--config", str(write(tmp_path, QUEUE))]) == 1
    assert cli.main(["--config", str(write(tmp_path, QUEUE + "batch = 2\n"))]) == 2
    monkeypatch.setitem(sys.modules, "glidemq.supervisor.supervisor", None)  # not importable
    assert cli.main(["--config", str(write(tmp_path, QUEUE))]) == 1


def test_url_schemes_match_the_connection() -> None:
    from glidemq.engine.connection import _SCHEMES
    from glidemq.supervisor.config import _URL_SCHEMES

    assert set(_URL_SCHEMES) == set(_SCHEMES)
