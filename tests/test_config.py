"""Unit tests (no broker): dts.config loading and validation, backoff, routes, worker names and argv."""

from __future__ import annotations

import dataclasses
import os
import ssl
import textwrap
import time
from pathlib import Path

import pytest
from helpers import ROOT, write_config

from dts.app.conf import celery_settings, declared_queues, route_table
from dts.config import (
    AutoscaleSettings,
    PoolAutoscale,
    PoolSettings,
    RetryPolicy,
    broker_url_from_env_file,
    deployment_env,
    load_settings,
    parse_settings,
    parse_yaml,
    project_dir,
    read_env_file,
)
from dts.errors import ConfigError, ExitCode
from dts.naming import launch_argv, nodename, pool_of_node, worker_argv
from dts.runtime.retry import backoff_delay, backoff_schedule

# the two seed pools, for documents that test another section
POOLS = "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n"
ROOT_KEYS = "autoscale, broker, code, dispatch, engine, load_test, monitoring, name, pools, retry, scenarios, tasks"
SHIPPED = ROOT / "test-config.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.exit_code == ExitCode.USAGE
    return str(err.value)


# --------------------------------------------------------------------------- valid files


def test_shipped_config_loads_with_seed_values():
    s = load_settings(SHIPPED)
    assert s.name == "Basic two-task execution test"
    assert (s.tasks["task_a"].duration, s.tasks["task_b"].duration) == (0.1, 0.2)
    assert (s.tasks["task_a"].queue, s.tasks["task_b"].queue) == ("queue_a", "queue_b")
    assert s.retry == RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=30.0, jitter=True)
    assert list(s.pools) == ["worker-a", "worker-b"]
    assert s.pools["worker-a"] == PoolSettings("worker-a", ("queue_a",), 1, 1, "prefork", 1, PoolAutoscale(1, 4, 20))
    assert s.autoscale == AutoscaleSettings(interval=2.0, cooldown=30.0)
    assert s.pools["worker-b"].queues == ("queue_b",)
    assert (
        s.engine.name,
        s.engine.stop_timeout,
        s.engine.start_timeout,
        s.engine.max_replicas,
        s.engine.health_interval,
    ) == ("auto", 60.0, 60.0, 10, 60.0)
    assert s.pool_for_task("task_a").name == "worker-a"
    assert s.pool_for_task("task_b").name == "worker-b"
    assert s.queues == ("queue_a", "queue_b")
    assert s.path == SHIPPED


def test_pools_only_gives_defaults_for_everything_else(tmp_path):
    s = load_settings(write(tmp_path, POOLS))
    assert s.name == "Distributed test"
    assert s.retry == RetryPolicy()
    assert s.pools["worker-a"] == PoolSettings("worker-a", ("queue_a",))
    assert (s.pools["worker-a"].replicas, s.pools["worker-a"].concurrency) == (1, 1)
    assert (s.tasks["task_a"].queue, s.tasks["task_b"].queue) == ("queue_a", "queue_b")
    assert (s.dispatch.timeout, s.load_test.timeout, s.engine.name) == (60.0, 300.0, "auto")
    assert s.pools["worker-a"].autoscale is None and s.autoscale == AutoscaleSettings()
    assert s.engine.health_interval == 60.0


def test_a_tasks_own_retry_keys_replace_the_sections(tmp_path):
    text = POOLS + "retry: {max_retries: 5, backoff_base: 0.5}\ntasks: {task_a: {retry: {max_retries: 0}}}\n"
    s = load_settings(write(tmp_path, text))
    assert s.retry_for("task_a") == RetryPolicy(max_retries=0, backoff_base=0.5)  # the rest: the section's
    assert s.retry_for("task_b") == s.retry == RetryPolicy(max_retries=5, backoff_base=0.5)
    bad = error_of(write(tmp_path, POOLS + "tasks: {task_a: {retry: {max_retries: -1}}}\n"))
    assert bad == "cfg.yml: tasks.task_a.retry.max_retries must be between 0 and 100 (got -1)"


def test_autoscale_defaults_and_values(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            """\
        engine: {max_replicas: 6}
        pools:
          worker-a: {queues: [queue_a], autoscale: {}}
          worker-b: {queues: [queue_b], autoscale: {min: 0, max: 2, target: 5}}
        autoscale: {interval: 0.5, cooldown: 0}
        """,
        )
    )
    assert s.pools["worker-a"].autoscale == PoolAutoscale(min=1, max=6, target=20)  # max: engine.max_replicas
    assert s.pools["worker-b"].autoscale == PoolAutoscale(min=0, max=2, target=5)
    assert s.autoscale == AutoscaleSettings(interval=0.5, cooldown=0.0)


def test_pool_with_two_queues_and_options(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            """\
        pools:
          io: {queues: [queue_a, queue_c], replicas: 0, concurrency: 8, execution_pool: threads, prefetch_multiplier: 4}
          cpu: {queues: queue_b}
        """,
        )
    )
    assert s.pools["io"] == PoolSettings("io", ("queue_a", "queue_c"), 0, 8, "threads", 4)
    assert s.pools["cpu"].queues == ("queue_b",)  # a single name is a one-queue list
    assert s.queues == ("queue_a", "queue_c", "queue_b")
    assert s.pool_for_queue("queue_c").name == "io"
    assert s.pool_for_task("task_b").name == "cpu"


def test_devices_and_volumes_are_loaded_whole_with_host_paths_absolute(tmp_path):
    pools = """\
        pools:
          worker-a:
            queues: [queue_a]
            devices: [/dev/ttyUSB0, "/dev/ttyACM0:/dev/board:rw"]
            volumes: ["images/:/images:ro", "/srv/firmware:/firmware/"]
          worker-b: {queues: [queue_b], volumes: "/srv/logs:/logs:rw"}
        """
    s = load_settings(write(tmp_path, pools))
    assert s.pools["worker-a"].devices == ("/dev/ttyUSB0:/dev/ttyUSB0:rwm", "/dev/ttyACM0:/dev/board:rw")
    assert s.pools["worker-a"].volumes == (f"{tmp_path}/images:/images:ro", "/srv/firmware:/firmware:rw")
    assert s.pools["worker-b"].volumes == ("/srv/logs:/logs:rw",)  # one string is a list of one
    assert s.pools["worker-b"].devices == ()


MOUNT = "pools: {{worker-a: {{queues: [queue_a], {key}: {value}}}, worker-b: {{queues: [queue_b]}}}}"
DEVICE_FORM = "must be HOST[:CONTAINER[:PERMISSIONS]] of letters, digits and _.@+/:- (e.g. /dev/ttyUSB0:/dev/board)"
VOLUME_FORM = "must be HOST:CONTAINER[:ro|rw] of letters, digits and _.@+/:- (e.g. /srv/images:/images:ro)"


@pytest.mark.parametrize(
    "key, value, expected",
    [
        (
            "devices",
            "[ttyUSB0]",
            "must name the device by its absolute path on the host (e.g. /dev/ttyUSB0) (got 'ttyUSB0')",
        ),
        (
            "devices",
            "[/dev/ttyUSB0:board]",
            "must give an absolute path in the container (e.g. /dev/board) (got '/dev/ttyUSB0:board')",
        ),
        (
            "devices",
            "[/dev/a:/dev/b:rx]",
            "must give the device's permissions as letters of rwm (e.g. rw) (got '/dev/a:/dev/b:rx')",
        ),
        (
            "devices",
            "[/dev/a:/dev/b:rr]",
            "must give the device's permissions as letters of rwm (e.g. rw) (got '/dev/a:/dev/b:rr')",
        ),
        ("devices", "[/dev/a:/dev/b:rw:x]", "must be HOST[:CONTAINER[:PERMISSIONS]] (got '/dev/a:/dev/b:rw:x')"),
        ("devices", "['/dev/a::rw']", "must be HOST[:CONTAINER[:PERMISSIONS]] (got '/dev/a::rw')"),
        ("devices", "['/dev/a,b']", f"{DEVICE_FORM} (got '/dev/a,b')"),
        ("devices", '["/dev/a\\n"]', f"{DEVICE_FORM} (got '/dev/a\\n')"),
        ("devices", '["/dev/a\\0"]', f"{DEVICE_FORM} (got '/dev/a\\x00')"),
        ("devices", "['/dev/my board']", f"{DEVICE_FORM} (got '/dev/my board')"),
        (
            "devices",
            "[/dev/a, /dev/a]",
            "mounts a second thing at /dev/a: give each its own container path (got '/dev/a')",
        ),
        ("devices", "[" + ", ".join(f"/dev/t{n}" for n in range(21)) + "]", "must list at most 20 devices (got ["),
        ("devices", "5", "must be a list (got 5)"),
        ("devices", "[5]", f"{DEVICE_FORM} (got 5)"),
        ("volumes", "[/srv/images]", "must be HOST:CONTAINER[:ro|rw] (got '/srv/images')"),
        (
            "volumes",
            "[/srv/images:images]",
            "must give an absolute path in the container (e.g. /images) (got '/srv/images:images')",
        ),
        (
            "volumes",
            "[/srv/images:/images:rx]",
            "must end in :ro or :rw (the mount's mode) (got '/srv/images:/images:rx')",
        ),
        (
            "volumes",
            "[../images:/images]",
            "must not hold .. in a path: give the path itself (got '../images:/images')",
        ),
        (
            "volumes",
            "[/srv/../etc:/etc2]",
            "must not hold .. in a path: give the path itself (got '/srv/../etc:/etc2')",
        ),
        (
            "volumes",
            "[/srv/x:/tmp]",
            "must not cover /tmp, the worker's own: pick another path in the container (got '/srv/x:/tmp')",
        ),
        (
            "volumes",
            "[/srv/x:/app]",
            "must not cover /app/test-config.yml, the worker's own: pick another path in the container (got '/srv/x:/app')",
        ),
        (
            "volumes",
            "[/srv/x:/]",
            "must not cover /app/test-config.yml, the worker's own: pick another path in the container (got '/srv/x:/')",
        ),
        (
            "volumes",
            "[/srv/x:/opt]",
            "must not cover /opt/venv, the worker's own: pick another path in the container (got '/srv/x:/opt')",
        ),
        (
            "volumes",
            "['/srv/a:/x', '/srv/b:/x/']",
            "mounts a second thing at /x: give each its own container path (got '/srv/b:/x/')",
        ),
        ("volumes", "['/srv/a;rm:/x']", f"{VOLUME_FORM} (got '/srv/a;rm:/x')"),
        ("volumes", "[" + ", ".join(f"/srv/{n}:/m{n}" for n in range(21)) + "]", "must list at most 20 volumes (got ["),
    ],
)
def test_bad_devices_and_volumes_are_one_line_naming_the_key_and_the_fix(tmp_path, key, value, expected):
    message = error_of(write(tmp_path, MOUNT.format(key=key, value=value)))
    assert message.startswith(f"cfg.yml: pools.worker-a.{key} {expected}")
    assert "\n" not in message


def test_a_device_and_a_volume_may_not_share_a_container_path(tmp_path):
    text = MOUNT.format(key="devices", value="[/dev/null:/data]").replace("]}", "], volumes: [/srv:/data]}", 1)
    assert error_of(write(tmp_path, text)) == (
        "cfg.yml: pools.worker-a.volumes mounts a second thing at /data: give each its own container path "
        "(got '/srv:/data')"
    )


def test_max_replicas_raises_the_replicas_limit(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            "engine: {max_replicas: 20}\npools: {a: {queues: [queue_a], replicas: 15}, b: {queues: [queue_b]}}\n",
        )
    )
    assert s.pools["a"].replicas == 15


def test_settings_are_frozen_and_broker_url_is_replaceable():
    s = load_settings(SHIPPED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]
    other = s.with_broker_url("amqp://u:p@elsewhere:5672/v")
    assert other.broker.url == "amqp://u:p@elsewhere:5672/v"
    assert s.broker.url != other.broker.url and other.pools == s.pools


# --------------------------------------------------------------------------- bad files: one line, exact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the document
        ("", "the file is empty; start from the project's test-config.yml"),
        ("# only a comment\n", "the file is empty; start from the project's test-config.yml"),
        ("- a\n- b", "the document must be a mapping (got ['a', 'b'])"),
        (POOLS + "bogus: 1", f"bogus is not a known key (known: {ROOT_KEYS}) (got 1)"),
        (POOLS + "1: x", f"1 is not a known key (known: {ROOT_KEYS}) (got 'x')"),
        # pools
        ("name: x", "pools is required: declare each pool's queues, e.g. worker-a: {queues: [queue_a]} (got None)"),
        ("pools: {}", "pools must declare 1 to 20 pools (got {})"),
        ("pools: [worker-a]", "pools must be a mapping (got ['worker-a'])"),
        (
            "pools: {worker-a: {queues: [queue_a], replicas: 11}}",
            "pools.worker-a.replicas must be between 0 and 10 (got 11)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], replicas: -1}}",
            "pools.worker-a.replicas must be between 0 and 10 (got -1)",
        ),
        (
            "engine: {max_replicas: 3}\npools: {worker-a: {queues: [queue_a], replicas: 4}}",
            "pools.worker-a.replicas must be between 0 and 3 (got 4)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], concurrency: 0}}",
            "pools.worker-a.concurrency must be between 1 and 256 (got 0)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], prefetch_multiplier: 0}}",
            "pools.worker-a.prefetch_multiplier must be between 1 and 1000 (got 0)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], execution_pool: gevent}}",
            "pools.worker-a.execution_pool must be one of prefork, threads, solo (got 'gevent')",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], queue: queue_b}}",
            "pools.worker-a.queue is not a known key "
            "(known: autoscale, concurrency, devices, execution_pool, log_level, prefetch_multiplier, queues, replicas, "
            "volumes) (got 'queue_b')",
        ),
        # autoscale (per pool, and the loop)
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {min: -1}}}",
            "pools.worker-a.autoscale.min must be between 0 and 10 (got -1)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {max: 11}}}",
            "pools.worker-a.autoscale.max must be between 1 and 10 (got 11)",
        ),
        (
            "engine: {max_replicas: 3}\npools: {worker-a: {queues: [queue_a], autoscale: {max: 4}}}",
            "pools.worker-a.autoscale.max must be between 1 and 3 (got 4)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {min: 3, max: 2}}}",
            "pools.worker-a.autoscale.min must be <= pools.worker-a.autoscale.max (2) (got 3)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {target: 0}}}",
            "pools.worker-a.autoscale.target must be between 1 and 1000000 (got 0)",
        ),
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {target: 2.5}}}",
            "pools.worker-a.autoscale.target must be an integer (got 2.5)",
        ),
        ("pools: {worker-a: {queues: [queue_a], autoscale: 3}}", "pools.worker-a.autoscale must be a mapping (got 3)"),
        (
            "pools: {worker-a: {queues: [queue_a], autoscale: {maximum: 3}}}",
            "pools.worker-a.autoscale.maximum is not a known key (known: max, min, target) (got 3)",
        ),
        (POOLS + "autoscale: {interval: 0}", "autoscale.interval must be between 0.1 and 60 (got 0)"),
        (POOLS + "autoscale: {interval: 61}", "autoscale.interval must be between 0.1 and 60 (got 61)"),
        (POOLS + "autoscale: {cooldown: -1}", "autoscale.cooldown must be between 0 and 3600 (got -1)"),
        (POOLS + "autoscale: {cooldown: 3601}", "autoscale.cooldown must be between 0 and 3600 (got 3601)"),
        (
            POOLS + "autoscale: {min: 1}",
            "autoscale.min is not a known key (known: cooldown, interval); a pool's range goes in pools.NAME.autoscale (got 1)",
        ),
        (
            "pools: {worker-a: {replicas: 1}}",
            "pools.worker-a.queues is required: the queue(s) this pool consumes, e.g. [queue_a] (got None)",
        ),
        ("pools: {worker-a: {queues: []}}", "pools.worker-a.queues must list 1 to 20 queue names (got [])"),
        ("pools: {worker-a: {queues: 5}}", "pools.worker-a.queues must be a list (got 5)"),
        ("pools: {worker-a: {queues: null}}", "pools.worker-a.queues must be a list (got None)"),
        (
            "pools: {worker-a: {queues: [queue a]}}",
            "pools.worker-a.queues must hold queue names of letters, digits and _.:- (at most 100) (got 'queue a')",
        ),
        (
            "pools: {worker-a: {queues: [1]}}",
            "pools.worker-a.queues must hold queue names of letters, digits and _.:- (at most 100) (got 1)",
        ),
        (
            "pools: {Worker_A: {queues: [queue_a]}}",
            "pools.Worker_A must be a lower-case name of letters, digits and dashes (e.g. worker-a) (got 'Worker_A')",
        ),
        (
            "pools: {a@b: {queues: [queue_a]}}",
            "pools.a@b must be a lower-case name of letters, digits and dashes (e.g. worker-a) (got 'a@b')",
        ),
        (
            "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b, queue_a]}}",
            "pools.worker-b.queues is already served by pool worker-a: a queue belongs to one pool (got 'queue_a')",
        ),
        # routing: every task's queue must be served
        (
            "pools: {worker-a: {queues: [queue_a]}}",
            "tasks.task_b.queue must be a pool's queue (queue_a) (got 'queue_b')",
        ),
        (
            POOLS + "tasks: {task_a: {queue: queue_x}}",
            "tasks.task_a.queue must be a pool's queue (queue_a, queue_b) (got 'queue_x')",
        ),
        (
            POOLS + "tasks: {task_b: {queue: queue_a}}",
            "tasks.task_b.queue must differ from task_a's queue (got 'queue_a')",
        ),
        # tasks
        (POOLS + "tasks: {task_a: {failure_rate: 1.5}}", "tasks.task_a.failure_rate must be between 0 and 1 (got 1.5)"),
        (POOLS + "tasks: {task_a: {duration: fast}}", "tasks.task_a.duration must be a number (got 'fast')"),
        (POOLS + "tasks: {task_a: {duration: .nan}}", "tasks.task_a.duration must be a finite number (got nan)"),
        (
            POOLS + "tasks: {task_c: {}}",
            "tasks.task_c.call is required: the Python callable the workers run, module:function (or command:) (got None)",
        ),
        # tasks of your own
        (
            POOLS + "tasks: {job: {call: nocolon, queue: queue_a}}",
            "tasks.job.call must be module:function (e.g. mylab.jobs:flash), a callable the workers import (got 'nocolon')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f'}}",
            "tasks.job.queue is required: the queue the task is routed to (a pool's queue) (got None)",
        ),
        (
            POOLS + "tasks: {task_a: {call: 'm:f'}}",
            "tasks.task_a.call applies to your own tasks (with call:) only (got 'm:f')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, duration: 1}}",
            "tasks.job.duration applies to the built-in tasks only (got 1)",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {x: '-rf'}}}",
            "tasks.job.params.x must not start with - (an option where an argument goes) (got '-rf')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {x: [1]}}}",
            "tasks.job.params.x must be a string, a number or true/false (got [1])",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, retry_on: [Glitch]}}",
            "tasks.job.retry_on must name an exception class by its dotted name (e.g. mylab.jobs.BoardBusy) (got 'Glitch')",
        ),
        (
            POOLS + "tasks: {Job: {call: 'm:f', queue: queue_a}}",
            "tasks.Job must be a lower-case name of letters, digits and _ (e.g. flash_and_test) (got 'Job')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: 'pytest -k smoke'}}",
            "tasks.job.command must be a list: the program and its arguments, e.g. [pytest, -k, smoke] (got 'pytest -k smoke')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: []}}",
            "tasks.job.command must be a list: the program and its arguments, e.g. [pytest, -k, smoke] (got [])",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo, '{x}']}}",
            "tasks.job.command has a placeholder with no value: {x} (declare it under params:) (got ['echo', '{x}'])",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: x}, choices: {board: [x]}}}",
            "tasks.job.choices.board names no declared param (params: b) (got 'board')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: x}, choices: {b: [y, z]}}}",
            "tasks.job.params.b must be one of y, z (got 'x')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: x}, choices: {b: []}}}",
            "tasks.job.choices.b must list 1 to 100 values (got [])",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: x}, patterns: {b: 'rev-[a-'}}}",
            "tasks.job.patterns.b must be a regular expression (unterminated character set at position 4) (got 'rev-[a-')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: x}, patterns: {b: 'rev-.'}}}",
            "tasks.job.params.b must match rev-. (got 'x')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, params: {b: rev-a}, choices: {b: [rev-a]}}}\n"
            "scenarios: {night: ['job:b=rev-z']}",
            "scenarios.night gives job:b a value it does not take: it must be one of rev-a (got 'job:b=rev-z')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_a, cleanup: [relay, 'off']}}",
            "tasks.job.cleanup applies to a command task only (got ['relay', 'off'])",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], cleanup: 'relay off'}}",
            "tasks.job.cleanup must be a list: the program and its arguments, e.g. [relay, off] (got 'relay off')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], cleanup: [relay, '{slot}']}}",
            "tasks.job.cleanup has a placeholder with no value: {slot} (declare it under params:) (got ['relay', '{slot}'])",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], report: junit}}",
            "tasks.job.report needs {report} in the command, where it writes it (e.g. --junitxml={report}) (got 'junit')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [pytest, '--junitxml={report}']}}",
            "tasks.job.command has a placeholder with no value: {report} (add report: junit) (got ['pytest', '--junitxml={report}'])",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [pytest, '--junitxml={report}'], report: xml}}",
            "tasks.job.report must be one of junit (got 'xml')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: ['{report}'], report: junit, params: {report: x}}}",
            "tasks.job.params must not declare report: {report} is the report file's path (got 'report')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], cleanup_timeout: 0}}",
            "tasks.job.cleanup_timeout must be between 1 and 3600 (got 0)",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], retry_on_exit: [0]}}",
            "tasks.job.retry_on_exit must hold exit codes from 1 to 255 (0 is success) (got 0)",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], call: 'm:f'}}",
            "tasks.job.command goes without call: a task runs a callable or a command (got ['echo'])",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, call: 'm:f', cwd: /tmp}}",
            "tasks.job.cwd applies to a command task only (got '/tmp')",
        ),
        (
            POOLS + "tasks: {job: {queue: queue_a, command: [echo], env: {A: 1}}}",
            "tasks.job.env.A must be a string (got 1)",
        ),
        (
            POOLS + "scenarios: {night: [task_c]}",
            "scenarios.night names no declared task (tasks: task_a, task_b) (got 'task_c')",
        ),
        (
            POOLS + "scenarios: {night: ['task_a:colour=red']}",
            "scenarios.night gives task_a a key it does not take: colour (got 'task_a:colour=red')",
        ),
        (
            POOLS + "scenarios: {night: ['0*task_a']}",
            "scenarios.night takes NAME[:KEY=VALUE,...], NAME a task's name (got '0*task_a')",
        ),
        (POOLS + "scenarios: {night: []}", "scenarios.night must list 1 to 100 tasks (got [])"),
        (
            POOLS + "dispatch: {tasks: [nope]}",
            "dispatch.tasks is not a declared task (tasks: task_a, task_b) (got 'nope')",
        ),
        (
            POOLS + "tasks: {job: {call: 'm:f', queue: queue_z}}",
            "tasks.job.queue must be a pool's queue (queue_a, queue_b) (got 'queue_z')",
        ),
        # retry
        (POOLS + "retry: {max_retries: -1}", "retry.max_retries must be between 0 and 100 (got -1)"),
        (POOLS + "retry: {max_retries: three}", "retry.max_retries must be an integer (got 'three')"),
        (POOLS + "retry: {max_retries: true}", "retry.max_retries must be an integer (got True)"),
        (POOLS + "retry: {backoff_base: -0.5}", "retry.backoff_base must be between 0 and 3600 (got -0.5)"),
        (POOLS + "retry: {backoff_base: .inf}", "retry.backoff_base must be a finite number (got inf)"),
        (POOLS + "retry: {jitter: maybe}", "retry.jitter must be true or false (got 'maybe')"),
        (POOLS + "retry: [1, 2]", "retry must be a mapping (got [1, 2])"),
        # engine
        (
            POOLS + "engine: {name: kubernetes}",
            "engine.name must be one of auto, compose, local, swarm, stub (got 'kubernetes')",
        ),
        (POOLS + "engine: {stop_timeout: 0}", "engine.stop_timeout must be between 1 and 3600 (got 0)"),
        (POOLS + "engine: {start_timeout: 3601}", "engine.start_timeout must be between 1 and 3600 (got 3601)"),
        (POOLS + "engine: {max_replicas: 0}", "engine.max_replicas must be between 1 and 1000 (got 0)"),
        (POOLS + "engine: {health_interval: 0.5}", "engine.health_interval must be between 1 and 3600 (got 0.5)"),
        (POOLS + "engine: {health_interval: 1h}", "engine.health_interval must be a number (got '1h')"),
        (
            POOLS + "engine: {mode: docker}",
            "engine.mode is not a known key (known: health_interval, log_files, log_max_mb, max_replicas, name, start_timeout, stop_timeout) (got 'docker')",
        ),
        # broker, dispatch, load_test
        (POOLS + "broker: {url: 5}", "broker.url must be a string (got 5)"),
        (
            POOLS + "broker: {url: 'redis://localhost:6379/0'}",
            "broker.url must be an AMQP URL like amqp://user:password@host:5672/vhost (got scheme 'redis'); "
            "this project needs RabbitMQ",
        ),
        (POOLS + "broker: {connect_timeout: 0}", "broker.connect_timeout must be between 0.1 and 60 (got 0)"),
        (
            POOLS + "broker: {queue_type: stream}",
            "broker.queue_type must be one of auto, classic, quorum (got 'stream')",
        ),
        (
            POOLS + "broker: {queue_type: quorum, delivery_limit: 0}",
            "broker.delivery_limit must be between 1 and 1000 (got 0)",
        ),
        (
            POOLS + "broker: {queue_type: quorum, delivery_limit: five}",
            "broker.delivery_limit must be an integer (got 'five')",
        ),
        (
            POOLS + "broker: {queue_type: classic, delivery_limit: 3}",
            "broker.delivery_limit applies to quorum queues only: set broker.queue_type: quorum (or auto) or drop it (got 3)",
        ),
        (
            POOLS + "broker: {queue: quorum}",
            "broker.queue is not a known key (known: connect_timeout, consumer_timeout, delivery_limit, heartbeat, queue_type, tls, url) (got 'quorum')",
        ),
        (POOLS + "broker: {tls: [ca.pem]}", "broker.tls must be a mapping (got ['ca.pem'])"),
        (
            POOLS + "broker: {tls: {}}",
            "broker.tls.ca_file is required: the PEM file of the CA that signed the broker's certificate (got None)",
        ),
        (POOLS + "broker: {tls: {ca_file: 5}}", "broker.tls.ca_file must be a string (got 5)"),
        (POOLS + "dispatch: {timeout: 0}", "dispatch.timeout must be between 0.1 and 86400 (got 0)"),
        (POOLS + "load_test: {min_efficiency: 2}", "load_test.min_efficiency must be between 0 and 1 (got 2)"),
    ],
)
def test_bad_config_is_one_line_naming_file_key_value_and_rule(tmp_path, text, expected):
    assert error_of(write(tmp_path, text)) == f"cfg.yml: {expected}"


def test_a_huge_value_is_cut_in_the_message(tmp_path):
    huge = "x" * 1_000_000  # under the file size cap
    message = error_of(write(tmp_path, f"{POOLS}retry: {{jitter: {huge}}}\n"))
    assert message.startswith("cfg.yml: retry.jitter must be true or false (got 'xxxx")
    assert message.endswith("...)")
    assert len(message) < 200 and "\n" not in message


HUGE = "x" * 10_000_000
SEED_POOLS = {"worker-a": {"queues": ["queue_a"]}, "worker-b": {"queues": ["queue_b"]}}


@pytest.mark.parametrize(
    ("doc", "start"),
    [
        ({"pools": {"worker-a": {"queues": [HUGE]}}}, "c.yml: pools.worker-a.queues must hold queue names"),
        (
            {"pools": SEED_POOLS, "tasks": {"task_a": {"queue": HUGE}}},
            "c.yml: tasks.task_a.queue must be a pool's queue",
        ),
        ({"pools": SEED_POOLS, "broker": {"url": HUGE}}, "c.yml: broker.url is 10000000 characters long"),
        ({"pools": SEED_POOLS, "broker": {"url": HUGE + "://h"}}, "c.yml: broker.url is 10000004 characters long"),
        ({"pools": SEED_POOLS, "broker": {"url": "x" * 1000}}, "c.yml: broker.url must be an AMQP URL"),
        ({"pools": SEED_POOLS, "broker": {"url": "x" * 1000 + "://h"}}, "c.yml: broker.url must be an AMQP URL"),
        ({"pools": SEED_POOLS, "name": [HUGE]}, "c.yml: name must be a string (got ['xxx"),
        (
            {"pools": SEED_POOLS, "retry": {"max_retries": HUGE}},
            "c.yml: retry.max_retries must be an integer (got 'xxx",
        ),
    ],
)
def test_huge_values_are_cut_in_every_message(doc, start):
    with pytest.raises(ConfigError) as err:
        parse_settings(doc, Path("c.yml"))
    message = str(err.value)
    assert message.startswith(start)
    assert "x" * 61 not in message and len(message) < 250 and "\n" not in message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^cfg\.yml: YAML syntax error at line 2, column 4"):
        load_settings(write(tmp_path, "name: a\n  b: c\n"))


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "cfg.yml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^cfg\.yml: not UTF-8 text"):
        load_settings(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read config .*pass --config PATH or set DTS_CONFIG"):
        load_settings(tmp_path / "nope.yml")


def test_parse_settings_refuses_an_empty_document():
    with pytest.raises(ConfigError, match=r"^c\.yml: the file is empty"):
        parse_settings(None, Path("c.yml"))


# --------------------------------------------------------------------------- where the file and URL come from


def test_a_relative_path_is_relative_to_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "lab.yml").write_text("name: this one\n" + POOLS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DTS_CONFIG", raising=False)
    s = load_settings("lab.yml")
    assert s.path == tmp_path / "lab.yml" and s.name == "this one"


def test_without_a_path_the_nearest_test_config_above_the_working_folder_is_the_project(tmp_path, monkeypatch):
    (tmp_path / "test-config.yml").write_text("name: the project's\n" + POOLS)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    monkeypatch.delenv("DTS_CONFIG", raising=False)
    s = load_settings()
    assert s.path == tmp_path / "test-config.yml" and s.name == "the project's"
    assert project_dir(s) == tmp_path


def test_no_config_here_or_above_says_to_run_dts_init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DTS_CONFIG", raising=False)
    if any((folder / "test-config.yml").exists() for folder in tmp_path.parents):
        pytest.skip("a test-config.yml above the temporary folder")
    with pytest.raises(ConfigError, match=r"^no test-config.yml in .* or a folder above it: run `dts init`"):
        load_settings()


def test_dts_config_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DTS_CONFIG", str(write_config(tmp_path / "env.yml")))
    s = load_settings()
    assert s.name == "Integration test config" and s.path == tmp_path / "env.yml"
    assert s.pools["worker-a"].replicas == 2


def test_broker_url_environment_overrides_file_and_must_be_amqp():
    doc = {"pools": {"a": {"queues": ["queue_a"]}, "b": {"queues": ["queue_b"]}}, "broker": {"url": "amqp://a@h1//"}}
    assert parse_settings(doc, Path("c.yml"), {"BROKER_URL": "amqp://b@h2//"}).broker.url == "amqp://b@h2//"
    assert parse_settings(doc, Path("c.yml"), {}).broker.url == "amqp://a@h1//"
    with pytest.raises(ConfigError, match=r"^c\.yml: \$BROKER_URL must be an AMQP URL"):
        parse_settings(doc, Path("c.yml"), {"BROKER_URL": "redis://x"})


def test_env_file_gives_dedicated_vhost_url(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# written by make broker\nDTS_BROKER_USER=dts\nDTS_BROKER_PASSWORD='p@ss/word'\nDTS_BROKER_VHOST=dts\n"
    )
    values = read_env_file(env)
    assert values == {"DTS_BROKER_USER": "dts", "DTS_BROKER_PASSWORD": "p@ss/word", "DTS_BROKER_VHOST": "dts"}
    assert broker_url_from_env_file(values) == "amqp://dts:p%40ss%2Fword@localhost:5672/dts"
    assert broker_url_from_env_file({**values, "DTS_BROKER_PORT": "5673"}, host="h").endswith("@h:5673/dts")
    assert broker_url_from_env_file({}) is None
    assert read_env_file(tmp_path / "missing") == {}


# --------------------------------------------------------------------------- broker.tls

TLS_DOC = {"pools": {"a": {"queues": ["queue_a"]}, "b": {"queues": ["queue_b"]}}}


def tls_doc(url: str = "amqps://u:p@broker.example:5671/v", **tls) -> dict:
    return {**TLS_DOC, "broker": {"url": url, **({"tls": tls} if tls else {})}}


@pytest.fixture
def pem(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def test_tls_gives_every_connection_the_ca_client_certificate_and_hostname(pem):
    s = parse_settings(tls_doc(ca_file="ca.pem", cert_file="client.pem", key_file="client.key"), pem / "c.yml")
    assert s.broker.tls.ca_file == str(pem / "ca.pem")  # relative to the config file
    assert celery_settings(s)["broker_use_ssl"] == {
        "ca_certs": str(pem / "ca.pem"),
        "certfile": str(pem / "client.pem"),
        "keyfile": str(pem / "client.key"),
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "broker.example",
    }
    named = parse_settings(tls_doc(ca_file="ca.pem", server_hostname="rabbit.internal"), pem / "c.yml")
    assert celery_settings(named)["broker_use_ssl"]["server_hostname"] == "rabbit.internal"
    assert "certfile" not in celery_settings(named)["broker_use_ssl"]
    assert celery_settings(parse_settings(TLS_DOC, pem / "c.yml"))["broker_use_ssl"] is False
    plain = parse_settings(tls_doc("amqp://u:p@localhost:5672/v", ca_file="ca.pem"), pem / "c.yml")
    assert celery_settings(plain)["broker_use_ssl"] is False  # the URL says whether: amqp:// is plain


def test_tls_files_from_the_environment_override_the_config(pem, tmp_path_factory):
    other = tmp_path_factory.mktemp("mounted") / "ca.pem"
    other.write_text("x")
    s = parse_settings(tls_doc(ca_file="ca.pem"), pem / "c.yml", {"BROKER_TLS_CA_FILE": str(other)})
    assert s.broker.tls.ca_file == str(other)
    env_only = parse_settings(tls_doc(), pem / "c.yml", {"BROKER_TLS_CA_FILE": str(other)})
    assert env_only.broker.tls.ca_file == str(other)
    assert deployment_env({"BROKER_TLS_CA_FILE": "/x", "BROKER_URL": "amqps://h//"}, pem / "no.env") == {
        "BROKER_TLS_CA_FILE": "/x",
        "BROKER_URL": "amqps://h//",
    }


@pytest.mark.parametrize(
    ("url", "tls", "env", "expected"),
    [
        (
            "amqps://h:5671//",
            {},
            {},
            "c.yml: broker.url is an amqps:// URL but broker.tls.ca_file is not set: add "
            "broker.tls: {ca_file: PATH} naming the CA that signed the broker's certificate",
        ),
        ("amqp://h//", {}, {"BROKER_URL": "amqps://h//"}, "c.yml: $BROKER_URL is an amqps:// URL but broker.tls"),
        (
            "amqps://h//",
            {"ca_file": "missing.pem"},
            {},
            "c.yml: broker.tls.ca_file names {dir}/missing.pem, which is not a file: give the path of a PEM file",
        ),
        ("amqps://h//", {"ca_file": "."}, {}, "c.yml: broker.tls.ca_file names {dir}, which is not a file"),
        (
            "amqps://h//",
            {"ca_file": "ca.pem"},
            {"BROKER_TLS_KEY_FILE": "/nope"},
            "c.yml: $BROKER_TLS_KEY_FILE names /nope, which is not a file",
        ),
        (
            "amqps://h//",
            {"ca_file": "ca.pem", "cert_file": "client.pem"},
            {},
            "c.yml: broker.tls.key_file is required with broker.tls.cert_file: a client certificate needs its key",
        ),
        (
            "amqps://h//",
            {"ca_file": "ca.pem", "key_file": "client.key"},
            {},
            "c.yml: broker.tls.cert_file is required with broker.tls.key_file",
        ),
        (
            "amqps://h//",
            {"ca_file": "ca.pem", "server_hostname": "a b"},
            {},
            "c.yml: broker.tls.server_hostname must be a host name or IP address (letters, digits, .:-) (got 'a b')",
        ),
        (
            "amqps://h//",
            {"ca_file": "ca.pem", "verify": False},
            {},
            "c.yml: broker.tls.verify is not a known key (known: ca_file, cert_file, key_file, server_hostname)",
        ),
    ],
    ids=[
        "amqps-no-ca",
        "env-amqps-no-ca",
        "missing-file",
        "directory",
        "env-missing-file",
        "cert-no-key",
        "key-no-cert",
        "bad-hostname",
        "unknown-key",
    ],
)
def test_bad_tls_config_is_exit_2_naming_key_and_file(pem, url, tls, env, expected):
    with pytest.raises(ConfigError) as err:
        parse_settings(tls_doc(url, **tls), pem / "c.yml", env)
    assert err.value.exit_code == ExitCode.USAGE
    assert str(err.value).startswith(expected.replace("{dir}", str(pem))), str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: an unreadable file cannot be made")
def test_unreadable_tls_file_is_exit_2(pem):
    (pem / "ca.pem").chmod(0)
    with pytest.raises(ConfigError, match=r"broker.tls.ca_file names .*ca.pem, which cannot be read"):
        parse_settings(tls_doc(ca_file="ca.pem"), pem / "c.yml")


def test_deployment_env_precedence(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\n")
    assert deployment_env({}, env) == {"BROKER_URL": "amqp://u:p@localhost:5672/v"}
    assert deployment_env({"BROKER_URL": "amqp://x@y//"}, env) == {"BROKER_URL": "amqp://x@y//"}
    assert deployment_env({}, tmp_path / "missing") == {}
    with pytest.raises(ConfigError, match=r"\$BROKER_URL is set but empty"):
        deployment_env({"BROKER_URL": " "}, env)


def test_dts_broker_host_points_the_env_file_credentials_at_a_broker_elsewhere(tmp_path):
    """A worker host (docs/deploy/multi-host.md): the broker host's .env lines plus DTS_BROKER_HOST; the
    environment's DTS_BROKER_HOST wins over the file's, as in docker compose."""
    env = tmp_path / ".env"
    env.write_text("DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\nDTS_BROKER_HOST=rabbit.lan\n")
    assert deployment_env({}, env)["BROKER_URL"] == "amqp://u:p@rabbit.lan:5672/v"
    assert deployment_env({"DTS_BROKER_HOST": "10.0.0.5"}, env) == {
        "BROKER_URL": "amqp://u:p@10.0.0.5:5672/v",
        "BROKER_URL_TLS": "amqps://u:p@10.0.0.5:5671/v",  # taken by a config with broker.tls
    }


def test_the_env_file_url_is_the_tls_one_for_a_broker_elsewhere_or_behind_its_tls_listener(tmp_path, monkeypatch):
    """With broker.tls set, the .env vhost/user is reached at the broker's TLS port when the broker is on
    another host (DTS_BROKER_HOST) or is the compose broker with its TLS listener (DTS_BROKER_TLS_DIR: no
    plain listener at all); this host's RabbitMQ over loopback stays plain, and so does a config without
    broker.tls."""
    from test_tls import make_certificates

    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    write_config(tmp_path / "test-config.yml")
    plain = (tmp_path / "test-config.yml").read_text()
    tls = plain.replace(
        "  connect_timeout: 5\n",
        "  connect_timeout: 5\n  tls: {ca_file: certs/ca.pem, cert_file: certs/client.pem, key_file: certs/client.key}\n",
    )
    assert tls != plain
    lines = "DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\n"
    cases = [
        (tls, lines + "DTS_BROKER_HOST=rabbit.lan\n", {}, "amqps://u:p@rabbit.lan:5671/v"),
        (tls, lines + "DTS_BROKER_TLS_DIR=certs\n", {"DTS_BROKER_TLS_PORT": "5699"}, "amqps://u:p@localhost:5699/v"),
        (tls, lines, {}, "amqp://u:p@localhost:5672/v"),
        (plain, lines + "DTS_BROKER_HOST=rabbit.lan\n", {}, "amqp://u:p@rabbit.lan:5672/v"),
    ]
    for config, env_lines, environ, url in cases:
        (tmp_path / "test-config.yml").write_text(config)
        (tmp_path / ".env").write_text(env_lines)
        for name in ("BROKER_URL", "BROKER_URL_FILE", "DTS_BROKER_HOST", "DTS_BROKER_TLS_DIR", "DTS_BROKER_TLS_PORT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        assert load_settings(tmp_path / "test-config.yml").broker.url == url, env_lines


def test_broker_url_file_sits_between_broker_url_and_env_file(tmp_path):
    """Docker's *_FILE convention (a swarm secret): BROKER_URL > BROKER_URL_FILE > .env > the config."""
    env = tmp_path / ".env"
    env.write_text("DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\n")
    secret = tmp_path / "broker_url"
    secret.write_text("amqp://s:pw@host.docker.internal:5672/sv\n")  # a trailing newline is not part of it
    from_file = {
        "BROKER_URL": "amqp://s:pw@host.docker.internal:5672/sv",
        "BROKER_URL_SOURCE": "the URL in $BROKER_URL_FILE",
    }
    assert deployment_env({"BROKER_URL_FILE": str(secret)}, env) == from_file
    assert deployment_env({"BROKER_URL_FILE": str(secret), "BROKER_URL": "amqp://x@y//"}, env) == {
        "BROKER_URL": "amqp://x@y//"
    }
    doc = {"pools": {"a": {"queues": ["queue_a"]}, "b": {"queues": ["queue_b"]}}, "broker": {"url": "amqp://a@h1//"}}
    assert parse_settings(doc, Path("c.yml"), from_file).broker.url == from_file["BROKER_URL"]
    secret.write_text("redis://localhost:6379/0")
    with pytest.raises(ConfigError, match=r"^c\.yml: the URL in \$BROKER_URL_FILE must be an AMQP URL"):
        parse_settings(doc, Path("c.yml"), deployment_env({"BROKER_URL_FILE": str(secret)}, env))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "missing",
            r"/missing: cannot read broker URL file \(No such file or directory\); \$BROKER_URL_FILE must name",
        ),
        ("", r"^\$BROKER_URL_FILE is set but empty: unset it or name a file holding the broker URL$"),
        (".", r" is a directory, not a broker URL file; \$BROKER_URL_FILE must name a readable file"),
        ("blank", r"/blank \(from \$BROKER_URL_FILE\) is empty; \$BROKER_URL_FILE must name"),
        ("huge", r"/huge is 5000 bytes: a broker URL file has at most 1026;"),
    ],
)
def test_unreadable_broker_url_file_is_exit_2_naming_it(tmp_path, name, expected):
    (tmp_path / "blank").write_text(" \n")
    (tmp_path / "huge").write_text("amqp://" + "h" * 4993)
    path = "" if name == "" else str(tmp_path / name)
    with pytest.raises(ConfigError, match=expected) as err:
        deployment_env({"BROKER_URL_FILE": path}, tmp_path / ".env")
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in str(err.value)


# --------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (0, 1.0, 30.0, 1.0),
        (1, 1.0, 30.0, 2.0),
        (2, 1.0, 30.0, 4.0),
        (5, 1.0, 30.0, 30.0),
        (0, 0.05, 1.0, 0.05),
        (3, 0.05, 1.0, 0.4),
        (10, 0.05, 1.0, 1.0),
        (4, 0.0, 1.0, 0.0),
    ],
)
def test_backoff_is_exponential_and_capped(attempt, base, cap, expected):
    policy = RetryPolicy(backoff_base=base, backoff_max=cap, jitter=False)
    assert backoff_delay(attempt, policy) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_jitter_stays_between_half_and_full_delay(rand, factor):
    policy = RetryPolicy(backoff_base=2.0, backoff_max=100.0, jitter=True)
    assert backoff_delay(2, policy, rand=lambda: rand) == pytest.approx(8.0 * factor)


def test_schedule_has_one_delay_per_retry():
    assert backoff_schedule(RetryPolicy(max_retries=4, backoff_base=0.5, backoff_max=3, jitter=False)) == [
        0.5,
        1.0,
        2.0,
        3.0,
    ]
    assert backoff_schedule(RetryPolicy(max_retries=0)) == []


# --------------------------------------------------------------------------- Celery settings


def test_routes_send_each_task_to_its_own_queue():
    s = load_settings(SHIPPED)
    assert route_table(s) == {
        "celery_app.task_a": {"queue": "queue_a", "routing_key": "queue_a"},
        "celery_app.task_b": {"queue": "queue_b", "routing_key": "queue_b"},
    }
    queues = declared_queues(s)
    assert [(q.name, q.durable, q.routing_key, q.exchange.name, q.exchange.type) for q in queues] == [
        ("queue_a", True, "queue_a", "queue_a", "direct"),
        ("queue_b", True, "queue_b", "queue_b", "direct"),
    ]


@pytest.mark.parametrize(
    ("broker", "work_args", "dead_args"),
    [
        ({}, {}, None),
        ({"queue_type": "classic"}, {}, None),
        ({"queue_type": "quorum"}, {"x-queue-type": "quorum", "x-delivery-limit": 5}, {"x-queue-type": "quorum"}),
        (
            {"queue_type": "quorum", "delivery_limit": 2},
            {"x-queue-type": "quorum", "x-delivery-limit": 2},
            {"x-queue-type": "quorum"},
        ),
    ],
)
def test_queue_type_is_declared_on_the_work_and_dead_letter_queues(broker, work_args, dead_args):
    s = parse_settings(
        {"pools": {"a": {"queues": ["queue_a"]}, "b": {"queues": ["queue_b"]}}, "broker": broker}, Path("c.yml"), {}
    )
    dlx = {"x-dead-letter-exchange": "queue_a.dlx", "x-dead-letter-routing-key": "queue_a"}
    queue_a = celery_settings(s)["task_queues"][0]
    assert queue_a.queue_arguments == {**dlx, **work_args}
    assert queue_a.dead_letter_queue().queue_arguments == dead_args
    assert s.broker.queues_type == broker.get("queue_type", "classic")


def test_every_pool_queue_is_declared_and_routes_follow_the_config(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            """\
        pools: {p1: {queues: [jobs_a, extra]}, p2: {queues: [jobs_b]}}
        tasks: {task_a: {queue: jobs_a}, task_b: {queue: jobs_b}}
        """,
        )
    )
    assert [q.name for q in declared_queues(s)] == ["jobs_a", "extra", "jobs_b"]
    assert route_table(s)["celery_app.task_b"] == {"queue": "jobs_b", "routing_key": "jobs_b"}
    conf = celery_settings(s)
    assert conf["task_default_queue"] == "jobs_a"
    assert [q.name for q in conf["task_queues"]] == ["jobs_a", "extra", "jobs_b"]


def test_reliability_settings():
    conf = celery_settings(load_settings(SHIPPED))
    assert conf["result_backend"] == "dts.app.rpc_backend:NackRetryingRPCBackend"  # rpc://, nacks retried
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] is True and conf["task_reject_on_worker_lost"] is True
    assert conf["task_create_missing_queues"] is False
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["broker_connection_timeout"] == 5


# --------------------------------------------------------------------------- worker names and command line


def test_worker_command_line_for_a_pool_with_two_queues():
    pool = PoolSettings(
        "io-2", ("q1", "q2"), replicas=3, concurrency=4, execution_pool="threads", prefetch_multiplier=8
    )
    argv = worker_argv(pool)
    assert argv[:4] == ["celery", "-A", "dts.app", "worker"]  # the package's app, never a user's celery_app.py
    assert argv[argv.index("-Q") + 1] == "q1,q2"
    assert argv[argv.index("-n") + 1] == "io-2@%h"
    assert argv[argv.index("--pool") + 1] == "threads"
    assert argv[argv.index("--concurrency") + 1] == "4"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "8"
    assert "--without-mingle" in argv and "--without-gossip" in argv
    assert worker_argv(pool, "vm-3")[argv.index("-n") + 1] == "io-2@vm-3"


def test_shipped_pools_run_their_own_queue():
    s = load_settings(SHIPPED)
    for name, queue in (("worker-a", "queue_a"), ("worker-b", "queue_b")):
        argv = worker_argv(s.pools[name])
        assert (argv[argv.index("-Q") + 1], argv[argv.index("-n") + 1]) == (queue, f"{name}@%h")


@pytest.mark.parametrize(
    ("pool", "host"),
    [
        ("worker-a", "vm-3"),
        ("worker-a", "%h"),
        ("w-1-2", "host-12.example.com"),
        ("a", "3f2c1d9e"),
        ("worker-b-12", "worker-b-3"),
        ("7", "x-1"),
    ],
)
def test_pool_of_node_inverts_nodename(pool, host):
    node = nodename(pool, host)
    assert node == f"{pool}@{host}"
    assert pool_of_node(node) == pool


@pytest.mark.parametrize(("node", "pool"), [("worker-a@vm-3", "worker-a"), ("worker-b-2@h", "worker-b-2"), ("", "")])
def test_pool_of_node_takes_everything_before_the_at(node, pool):
    assert pool_of_node(node) == pool


def test_launch_argv_is_the_worker_module_entry_point():
    assert launch_argv("worker-a") == ["python", "-m", "dts", "worker", "worker-a"]
    assert launch_argv("worker-a", "vm-3", python="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "dts",
        "worker",
        "worker-a",
        "--host",
        "vm-3",
    ]


def test_worker_entry_point_refuses_an_unknown_or_missing_pool(tmp_path, monkeypatch, capsys):
    from dts.cli import worker

    monkeypatch.delenv("DTS_POOL", raising=False)
    config = write_config(tmp_path / "cfg.yml")
    assert worker.main(["worker-z", "--config", str(config)]) == ExitCode.USAGE
    assert (
        capsys.readouterr().err == "dts worker: error: unknown pool 'worker-z': cfg.yml declares worker-a, worker-b\n"
    )
    assert worker.main(["--config", str(config)]) == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("dts worker: error: no pool given")


def test_a_queue_listed_twice_in_one_pool_says_so(tmp_path):
    path = write(tmp_path, "pools: {worker-a: {queues: [queue_a, queue_a]}, worker-b: {queues: [queue_b]}}")
    assert error_of(path) == "cfg.yml: pools.worker-a.queues is listed twice (got 'queue_a')"


@pytest.mark.parametrize(
    "doc",
    [
        {"k" * 1_000_000: 1},
        {"pools": {"w" * 1_000_000: {"queues": ["q"]}}},
        {"pools": SEED_POOLS, "tasks": {"t" * 1_000_000: {}}},
    ],
)
def test_a_huge_key_is_cut_in_the_message(doc):
    with pytest.raises(ConfigError) as err:
        parse_settings(doc, Path("c.yml"))
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)


# --------------------------------------------------------------------------- input bounds (docs/reference/input-bounds.md)

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True)
)  # 9^9 items from ~500 bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BOMB, "line 1, column 4: YAML anchors and aliases (&name, *name) are not supported"),
        ("name: &n x\n", "YAML anchors and aliases"),
        ("a: [" + "1, " * 20_000 + "1]\n", "more than 10000 YAML values"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 20 levels"),
        ("a: " + "{b: " * 30 + "1" + "}" * 30 + "\n", "nested deeper than 20 levels"),
        ("a: " + "9" * 5000 + "\n", "an integer of more than 30 digits"),
        ("a: !" + "t" * 10_000 + " 1\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "expected a single document in the stream"),
        ("a: \x00\n", "YAML syntax error: unacceptable character #x0000"),
        ("a: 1\nb:\n  c: 1\n  c: 2\n", "line 4, column 3: key 'c' written twice (lines 3 and 4): keep one"),
        ("a: {x: 1, x: 2}\n", "key 'x' written twice (line 1): keep one"),
        ("1: a\n0x1: b\n", "key 1 written twice (lines 1 and 2): keep one"),  # one key, however it is written
    ],
)
def test_yaml_bounds_refuse_in_milliseconds(text, expected):
    from dts.config import parse_yaml

    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, Path("c.yml"))
    assert time.monotonic() - started < 0.5
    assert str(err.value).startswith("c.yml: YAML ") and expected in str(err.value)
    assert len(str(err.value)) < 250 and "\n" not in str(err.value)


def test_the_shipped_config_is_far_inside_the_bounds():
    from dts.config import MAX_CONFIG_BYTES, parse_yaml

    assert SHIPPED.stat().st_size < MAX_CONFIG_BYTES / 50
    assert parse_yaml(SHIPPED.read_text(), SHIPPED)["pools"]["worker-a"]["queues"] == ["queue_a"]


def test_a_config_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from dts.config import MAX_CONFIG_BYTES

    path = tmp_path / "big.yml"
    path.write_text(POOLS + "#" * MAX_CONFIG_BYTES)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("read a file over the cap"))
    assert (
        error_of(path) == f"{path} is {path.stat().st_size} bytes: a config has at most 1048576; "
        "pass --config PATH or set DTS_CONFIG"
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir() or p, "is a directory, not a config"),
        (lambda p: Path("/dev/zero"), "/dev/zero is not a regular file: cannot read config"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00") and p, "cfg.yml: not UTF-8 text"),
    ],
)
def test_files_that_are_not_config_text_are_one_line(tmp_path, make, expected):
    assert expected in error_of(make(tmp_path / "cfg.yml"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "amqp://" + "h" * 2000,
            "$BROKER_URL is 2007 characters long; an AMQP URL has at most 1024 (starts 'amqp://hhhhhhhhh...)",
        ),
        (
            "amqp://guest:guest@localhost:99999//",
            "$BROKER_URL has a bad port (Port out of range 0-65535): use host:5672",
        ),
        ("amqp://guest:guest@localhost:5672/\n", "$BROKER_URL has a space or control character ('\\n' at position 34)"),
        (
            "http://localhost:15672/",
            "must be an AMQP URL like amqp://user:password@host:5672/vhost (got scheme 'http')",
        ),
    ],
)
def test_bad_broker_urls_are_one_line_without_the_url(url, expected):
    with pytest.raises(ConfigError) as err:
        parse_settings({"pools": SEED_POOLS}, Path("c.yml"), {"BROKER_URL": url})
    assert str(err.value).startswith("c.yml: ") and expected in str(err.value)
    assert "guest:guest" not in str(err.value)


def test_env_file_is_read_within_its_bound(tmp_path):
    big = tmp_path / ".env"
    big.write_text("A=" + "x" * 70_000 + "\n")
    with pytest.raises(ConfigError, match=r"is 70003 bytes: a env file has at most 65536"):
        read_env_file(big)
    with pytest.raises(ConfigError, match=r"is a directory, not a env file"):
        read_env_file(tmp_path)
    assert read_env_file(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("int", "1001", "must be an integer from 1 to 1000 (got '1001')"),
        (
            "int",
            "9" * 100_000,
            "must be an integer from 1 to 1000 (got '99999999999999999999999999999999999999999999999999999999...)",
        ),
        ("int", "-1", "must be an integer from 1 to 1000 (got '-1')"),
        ("float", "nan", "must be a number > 0 and <= 86400 (got 'nan')"),
        ("float", "1e400", "must be a number > 0 and <= 86400 (got '1e400')"),
        ("float", "0", "must be a number > 0 and <= 86400 (got '0')"),
    ],
)
def test_cli_numbers_have_upper_bounds(kind, text, expected):
    import argparse

    from dts.cli import MAX_TIMEOUT, float_between, int_between

    parse = int_between(1, 1000) if kind == "int" else float_between(0, MAX_TIMEOUT, low_open=True)
    with pytest.raises(argparse.ArgumentTypeError) as err:
        parse(text)
    assert str(err.value) == expected
    assert int_between(1, 1000)(" 1000 ") == 1000 and float_between(0, MAX_TIMEOUT, low_open=True)("86400") == 86400


def test_failover_urls_are_checked_one_by_one_and_redacted_each():
    """`;`-separated URLs are the nodes of one cluster (kombu tries them in turn, round robin)."""
    from dts.amqp.checks import redact_url
    from dts.config import broker_urls

    urls = "amqp://u:secret@rabbit-1:5672/v;amqp://u:secret@rabbit-2:5672/v"
    assert broker_urls(urls) == ["amqp://u:secret@rabbit-1:5672/v", "amqp://u:secret@rabbit-2:5672/v"]
    assert redact_url(urls) == "amqp://u:***@rabbit-1:5672/v;amqp://u:***@rabbit-2:5672/v"
    assert broker_urls("amqp://u:p@h/v") == ["amqp://u:p@h/v"]


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("amqp://u:p@localhost:5672/v", "classic"),
        ("amqp://u:p@localhost:5681/v;amqp://u:p@localhost:5682/v;amqp://u:p@localhost:5683/v", "quorum"),
    ],
)
def test_queue_type_auto_is_quorum_for_the_nodes_of_a_cluster(tmp_path, url, resolved):
    """The shipped `queue_type: auto`: a broker URL listing several nodes (a cluster) gets replicated queues,
    the work, dead-letter and reply queues alike."""
    from helpers import app_for

    from dts.amqp.replies import reply_queue_arguments

    path = tmp_path / "c.yml"
    path.write_text(POOLS + "broker: {queue_type: auto}")
    settings = parse_settings(parse_yaml(path.read_text(), path), path, {"BROKER_URL": url})
    assert settings.broker.queues_type == resolved
    reply = reply_queue_arguments(app_for(settings))
    assert reply == ({"x-queue-type": "quorum"} if resolved == "quorum" else {})


def test_a_nacked_result_is_published_again_and_other_errors_are_not(monkeypatch):
    """The retry loop of dts.app.rpc_backend alone (the nack itself comes from a cluster electing a leader:
    tests/test_cluster.py): a nacked publish is made again, a connection error is left to Celery's own
    retries, and the nacks are bounded."""
    from amqp.exceptions import MessageNacked
    from celery.backends.rpc import RPCBackend
    from kombu.exceptions import OperationalError

    from dts.app import rpc_backend

    calls = []

    def store(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) < 3:
            raise OperationalError("") from MessageNacked()
        return "stored"

    monkeypatch.setattr(RPCBackend, "store_result", store)
    monkeypatch.setattr(rpc_backend, "NACK_PAUSE", 0)
    backend = rpc_backend.NackRetryingRPCBackend.__new__(rpc_backend.NackRetryingRPCBackend)
    assert backend.store_result("t1", {}, "SUCCESS") == "stored" and calls == ["t1"] * 3

    def lost(self, *args, **kwargs):
        raise OperationalError("connection lost")

    monkeypatch.setattr(RPCBackend, "store_result", lost)
    with pytest.raises(OperationalError, match="connection lost"):
        backend.store_result("t2", {}, "SUCCESS")
    calls.clear()

    def always_nacked(self, *args, **kwargs):
        calls.append(args[0])
        raise OperationalError("") from MessageNacked()

    monkeypatch.setattr(RPCBackend, "store_result", always_nacked)
    with pytest.raises(OperationalError):
        backend.store_result("t3", {}, "SUCCESS")
    assert len(calls) == rpc_backend.NACK_RETRIES


def test_a_task_of_your_own_shares_a_queue_and_keeps_its_params_types(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(
        POOLS
        + "tasks: {flash: {queue: queue_a, call: 'lab.jobs:flash', params: {board: rev-a, slot: 2, dry: true},"
        + " retry_on: [lab.jobs.Busy], soft_time_limit: 5, time_limit: 6}}\ndispatch: {tasks: [flash, task_b]}\n"
    )
    s = load_settings(path)
    flash = s.tasks["flash"]
    assert (flash.queue, flash.call, flash.retry_on) == ("queue_a", "lab.jobs:flash", ("lab.jobs.Busy",))
    assert flash.params == {"board": "rev-a", "slot": 2, "dry": True}
    assert s.pool_for_task("flash").name == s.pool_for_task("task_a").name  # two tasks on one queue
    assert s.dispatch.tasks == ("flash", "task_b") and list(s.tasks) == ["task_a", "task_b", "flash"]
