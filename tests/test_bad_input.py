"""Bad input, table-driven (issue 10, "Bounded input"): every CLI refuses each case quickly, with one short
line on stderr and its documented exit code, no traceback, and nothing published.

Each case runs the real CLI as a subprocess with BROKER_URL on a vhost of its own where the task queues
are declared and nobody consumes (unless the case is about BROKER_URL itself); after each case both queues
must still be empty. `{cfg}` in a case's argv is the path of the config file the case writes (its text, or
what its maker makes); cases without one use a valid config.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CHECKOUT, fresh_vhost, run_cli, vhost_url, write_config

from dts.amqp.deadline import Deadline

pytestmark = pytest.mark.integration

BAD_INPUT_VHOST = f"dts-test-badinput-{CHECKOUT}"  # queues declared, never consumed: a publish would stay there
BAD_INPUT_URL = vhost_url(BAD_INPUT_VHOST)
NEVER_VHOST = f"dts-test-never-{CHECKOUT}"  # the provision case must not create it
MAX_SECONDS = 2.0  # a refusal, subprocess start-up (Celery import) included
MAX_LINE = 300

POOLS = "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n"
BILLION_LAUGHS = (
    POOLS
    + "retry:\n"
    + "".join(
        f"  {'max_retries' if n == 8 else f'k{n}'}: &l{n} [{', '.join([f'*l{n - 1}'] * 9) if n else ', '.join(['lol'] * 9)}]\n"
        for n in range(9)
    )
)  # retry.max_retries is 9^9 'lol's (387 million) from ~600 bytes: its error message would quote it


def sized(size: int) -> Callable[[Path], Path]:
    """A maker: a config file of `size` bytes (a valid document padded by a comment)."""

    def make(path: Path) -> Path:
        path.write_text(POOLS + "#" + "x" * (size - len(POOLS) - 2) + "\n")
        return path

    return make


def binary(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 4)
    return path


def directory(path: Path) -> Path:
    path.mkdir()
    return path


def missing(path: Path) -> Path:
    return path.parent / "does-not-exist.yml"


def device(path: Path) -> Path:
    return Path("/dev/zero")  # stat says 0 bytes, a read never ends: must be refused before reading


def too_many_values(path: Path) -> Path:
    path.write_text(POOLS + "name: [" + ", ".join(["1"] * 20_000) + "]\n")
    return path


Case = tuple  # (id, argv, env, config text or maker or None, exit code, substring of the message)
CASES: list[Case] = [
    # --- config files (every CLI reads them through dts.config.load_settings)
    ("billion-laughs", ["dispatch.py", "--config", "{cfg}"], {}, BILLION_LAUGHS, 2, "anchors and aliases"),
    (
        "key-twice",
        ["load_test.py", "--config", "{cfg}", "--tasks", "1"],
        {},
        "pools:\n  worker-a:\n    queues: [queue_a]\n    replicas: 1\n    replicas: 3\n  worker-b: {queues: [queue_b]}\n",
        2,
        "bad.yml: YAML refused at line 5, column 5: key 'replicas' written twice (lines 4 and 5): keep one",
    ),
    (
        "anchor-merge-key",
        ["load_test.py", "--config", "{cfg}"],
        {},
        POOLS + "retry: &r {max_retries: 1}\ndispatch: {<<: *r}\n",
        2,
        "anchors and aliases",
    ),
    (
        "over-size-cap",
        ["dispatch.py", "--config", "{cfg}"],
        {},
        sized(2 * 1024 * 1024),
        2,
        "a config has at most 1048576",
    ),
    (
        "just-under-cap-huge-value",
        ["scale.py", "status", "--config", "{cfg}"],
        {},
        POOLS + "retry: {jitter: " + "x" * 1_000_000 + "}\n",
        2,
        "retry.jitter must be true or false",
    ),
    (
        "deep-nesting",
        ["scale.py", "status", "--config", "{cfg}"],
        {},
        POOLS + "name: " + "[" * 100_000,
        2,
        "nested deeper than 20",
    ),
    ("too-many-values", ["load_test.py", "--config", "{cfg}"], {}, too_many_values, 2, "more than 10000 YAML values"),
    (
        "huge-integer",
        ["dispatch.py", "--config", "{cfg}"],
        {},
        POOLS + "retry: {max_retries: " + "9" * 5000 + "}\n",
        2,
        "more than 30 digits",
    ),
    (
        "python-tag",
        ["dispatch.py", "--config", "{cfg}"],
        {},
        POOLS + "name: !!python/object/apply:os.system [id]\n",
        2,
        "could not determine a constructor",
    ),
    ("empty-config", ["dispatch.py", "--config", "{cfg}"], {}, "", 2, "the file is empty"),
    ("comments-only-config", ["scale.py", "up", "--config", "{cfg}"], {}, "# nothing\n", 2, "the file is empty"),
    ("binary-config", ["scale.py", "status", "--config", "{cfg}"], {}, binary, 2, "not UTF-8 text"),
    ("config-is-a-directory", ["dispatch.py", "--config", "{cfg}"], {}, directory, 2, "is a directory"),
    ("config-missing", ["load_test.py", "--config", "{cfg}"], {}, missing, 2, "cannot read config"),
    ("config-is-a-device", ["dispatch.py", "--config", "{cfg}"], {}, device, 2, "not a regular file"),
    ("config-path-too-long", ["dispatch.py", "--config", "x" * 5000], {}, None, 2, "cannot read config"),
    (
        "yaml-syntax-error",
        ["-m", "dts", "worker", "worker-a", "--config", "{cfg}"],
        {},
        "retry: {max_retries: [1\n",
        2,
        "YAML syntax error",
    ),
    (
        "two-documents",
        ["-m", "dts", "flower", "--config", "{cfg}"],
        {},
        POOLS + "---\n" + POOLS,
        2,
        "expected a single document",
    ),
    # --- the environment
    ("broker-url-empty", ["dispatch.py"], {"BROKER_URL": ""}, None, 2, "$BROKER_URL is set but empty"),
    ("broker-url-blank", ["load_test.py"], {"BROKER_URL": "  \t "}, None, 2, "$BROKER_URL is set but empty"),
    # Linux refuses an environment string over 128 KiB (MAX_ARG_STRLEN): 10 MB cannot reach a process
    (
        "broker-url-huge",
        ["dispatch.py"],
        {"BROKER_URL": "amqp://" + "x" * 120_000},
        None,
        2,
        "characters long; an AMQP URL has at most 1024",
    ),
    (
        "broker-url-scheme",
        ["scale.py", "status"],
        {"BROKER_URL": "redis://localhost:6379/0"},
        None,
        2,
        "scheme 'redis'",
    ),
    ("broker-url-no-scheme", ["dispatch.py"], {"BROKER_URL": "localhost:5672"}, None, 2, "must be an AMQP URL"),
    (
        "broker-url-bad-port",
        ["dispatch.py"],
        {"BROKER_URL": "amqp://guest:guest@localhost:notaport//"},
        None,
        2,
        "bad port",
    ),
    (
        "broker-url-space",
        ["load_test.py"],
        {"BROKER_URL": "amqp://guest:guest@local host:5672//"},
        None,
        2,
        "space or control character",
    ),
    # failover URLs (the nodes of one cluster, separated by ';')
    (
        "broker-urls-empty-part",
        ["dispatch.py"],
        {"BROKER_URL": "amqp://guest:guest@127.0.0.1:1//;"},
        None,
        2,
        "has an empty URL at position 2 of 2",
    ),
    (
        "broker-urls-too-many",
        ["load_test.py"],
        {"BROKER_URL": ";".join(f"amqp://guest:guest@127.0.0.1:{port}//" for port in range(1, 11))},
        None,
        2,
        "lists 10 URLs; at most 9",
    ),
    (
        "broker-urls-mixed-schemes",
        ["scale.py", "status"],
        {"BROKER_URL": "amqp://guest:guest@127.0.0.1:1//;amqps://guest:guest@127.0.0.1:2//"},
        None,
        2,
        "mixes amqp and amqps URLs",
    ),
    (
        "broker-urls-none-reachable",
        ["dispatch.py"],
        {"BROKER_URL": "amqp://guest:guest@127.0.0.1:1//;amqp://guest:guest@127.0.0.1:2//"},
        None,
        3,
        "cannot reach the broker",
    ),
    (
        "broker-unreachable",
        ["dispatch.py"],
        {"BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"},
        None,
        3,
        "cannot reach the broker",
    ),
    (
        "worker-ping-broker-unreachable",
        ["-m", "dts", "worker", "worker-a", "--ping"],
        {"BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"},
        None,
        3,
        "cannot reach the broker",
    ),
    ("log-format-huge", ["dispatch.py"], {"LOG_FORMAT": "j" * 100_000}, None, 2, "is not a log format"),
    # --- counts and numbers on the command line
    ("tasks-huge", ["load_test.py", "--tasks", "1000000000000"], {}, None, 2, "from 1 to 50000"),
    ("tasks-100k-digits", ["load_test.py", "--tasks", "9" * 100_000], {}, None, 2, "from 1 to 50000"),
    ("duration-huge", ["load_test.py", "--duration-a", "1e9"], {}, None, 2, "from 0 to 3600"),
    ("sweep-too-many", ["load_test.py", "--sweep", ",".join(["1"] * 21)], {}, None, 2, "1 to 20 pool sizes"),
    ("sweep-size-huge", ["load_test.py", "--sweep", "1,99999"], {}, None, 2, "from 1 to 1000"),
    ("load-timeout-inf", ["load_test.py", "--timeout", "inf"], {}, None, 2, "<= 86400"),
    ("mix-unknown-task", ["load_test.py", "--mix", "task_a=1,nope=2"], {}, None, 2, "unknown task 'nope'"),
    ("mix-weight-zero", ["load_test.py", "--mix", "task_a=0"], {}, None, 2, "weight of task_a must be a number > 0"),
    ("mix-weight-inf", ["load_test.py", "--mix", "task_b=inf"], {}, None, 2, "weight of task_b must be a number > 0"),
    ("mix-huge", ["load_test.py", "--mix", "task_a=1," * 10_000], {}, None, 2, "takes at most 20 NAME=WEIGHT"),
    ("repeat-huge", ["dispatch.py", "--repeat", "1001"], {}, None, 2, "from 1 to 1000"),
    ("fail-times-huge", ["dispatch.py", "--fail-times", "101"], {}, None, 2, "from 0 to 100"),
    ("dispatch-timeout-huge", ["dispatch.py", "--timeout", "1e12"], {}, None, 2, "<= 86400"),
    ("scale-count-huge", ["scale.py", "set", "worker-a", "100000"], {}, None, 2, "from 0 to 1000"),
    ("scale-all-count-nan", ["scale.py", "all", "nan"], {}, None, 2, "from 0 to 1000"),
    (
        "scale-count-over-max-replicas",
        ["scale.py", "set", "worker-a", "11", "--config", "{cfg}"],
        {},
        POOLS,
        2,
        "engine.max_replicas=10",
    ),
    ("scale-pool-name-huge", ["scale.py", "set", "w" * 100_000, "1"], {}, None, 2, "unknown pool"),
    ("watch-count-huge", ["scale.py", "status", "--watch", "--count", "10000000"], {}, None, 2, "1 to 1000000"),
    ("watch-interval-huge", ["scale.py", "status", "--watch", "--interval", "1e6"], {}, None, 2, "<= 3600"),
    ("logs-lines-huge", ["scale.py", "logs", "--lines", "100001"], {}, None, 2, "from 1 to 10000"),
    ("unknown-option-huge", ["dispatch.py", "--" + "x" * 100_000], {}, None, 2, "unrecognized arguments"),
    ("flower-port", ["-m", "dts", "flower", "--port", "70000"], {}, None, 2, "from 1 to 65535"),
    ("junit-is-a-directory", ["dispatch.py", "--junit", "{tmp}"], {}, None, 2, "is a directory: give a file name"),
    (
        "provision-env-file-missing-folder",
        ["-m", "dts", "broker", "--vhost", NEVER_VHOST, "--user", NEVER_VHOST, "--env-file", "{tmp}/no/such/.env"],
        {},
        None,
        2,
        "its folder does not exist",
    ),
]


@pytest.fixture(scope="module")
def empty_vhost(rabbitmq, tmp_path_factory):
    """The case vhost with the task queues declared (as the app declares them) and empty; yields a function
    returning each queue's messages, counted by passive declare (no consumer ever runs here)."""
    from helpers import app_for

    from dts.amqp.checks import queue_stats
    from dts.config import load_settings

    fresh_vhost(BAD_INPUT_VHOST, "guest")
    settings = load_settings(write_config(tmp_path_factory.mktemp("bad-input") / "good.yml"))
    app = app_for(settings.with_broker_url(BAD_INPUT_URL))
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()
            conn.default_channel.queue_purge(queue.name)

    def depths() -> dict[str, int]:
        return {q: s.ready for q, s in queue_stats(app, settings.queues, Deadline.after(5)).items()}

    assert depths() == dict.fromkeys(settings.queues, 0)
    yield depths
    app.close()


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def vhost_exists(name: str) -> bool:
    from dts.provision import rabbitmqctl

    return name in rabbitmqctl("list_vhosts", "name").stdout.split()


def test_the_table_is_big_enough():
    assert len(CASES) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("argv", "env", "config", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_in_one_line(tmp_path, empty_vhost, argv, env, config, code, message):
    cfg = tmp_path / "bad.yml"
    if config is None:
        cfg = write_config(tmp_path / "good.yml")
    elif isinstance(config, str):
        cfg.write_text(config)
    else:
        cfg = config(cfg)
    argv = [arg.replace("{cfg}", str(cfg)).replace("{tmp}", str(tmp_path)) for arg in argv]
    if "--config" not in argv:
        env = {"DTS_CONFIG": str(cfg), **env}
    env = {"BROKER_URL": BAD_INPUT_URL, "DTS_RUN_DIR": str(tmp_path / "run"), **env}

    started, cpu_before = time.monotonic(), cpu_of_children()
    proc = run_cli(*argv, env=env, timeout=30)
    elapsed, cpu = time.monotonic() - started, cpu_of_children() - cpu_before

    lines = proc.stderr.splitlines()
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {proc.stderr[-2000:]!r}"
    assert len(lines[0]) < MAX_LINE, lines[0][:2000]
    assert message in lines[0]
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f}s ({cpu:.2f}s of CPU: a loaded machine if far less): {lines[0]}"
    assert set(empty_vhost().values()) == {0}, "a message was published"
    if "broker" in argv:
        assert not vhost_exists(NEVER_VHOST), "the vhost was created before the input was checked"


def test_unreadable_config_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    cfg = write_config(tmp_path / "locked.yml")
    cfg.chmod(0)
    proc = run_cli("dispatch.py", "--config", str(cfg), timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot read config (Permission denied)" in proc.stderr
