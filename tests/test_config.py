"""Unit tests (no broker): config loading and validation, backoff, routes, worker names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from celery_app import (
    ConfigError,
    RetryPolicy,
    backoff_delay,
    backoff_schedule,
    broker_url_from_env_file,
    celery_settings,
    declared_queues,
    load_config,
    parse_config,
    pool_of_worker,
    read_env_file,
    route_table,
    worker_argv,
)

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_loads_with_seed_values():
    cfg = load_config(ROOT / "test-config.yml")
    assert cfg.name == "Basic two-task execution test"
    assert (cfg.tasks["task_a"].duration, cfg.tasks["task_b"].duration) == (0.1, 0.2)
    assert cfg.retry.max_retries == 3
    assert cfg.pool_for_task("task_a").name == "worker-a"
    assert cfg.pool_for_task("task_b").name == "worker-b"


def test_empty_document_gives_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.retry == RetryPolicy()
    assert cfg.prefetch_multiplier == 1
    assert cfg.broker_url.startswith("amqp://")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus: 1", "bogus is not a known key"),
        ("retry: {max_retries: -1}", "retry.max_retries must be between 0 and 100 (got -1)"),
        ("retry: {max_retries: three}", "retry.max_retries must be an integer (got 'three')"),
        ("retry: {max_retries: true}", "retry.max_retries must be an integer (got True)"),
        ("retry: {backoff_base: -0.5}", "retry.backoff_base must be between 0 and 3600 (got -0.5)"),
        ("retry: {jitter: maybe}", "retry.jitter must be true or false (got 'maybe')"),
        ("retry: {delay: 1}", "retry.delay is not a known key"),
        ("retry: [1, 2]", "retry must be a mapping"),
        ("tasks: {task_a: {failure_rate: 1.5}}", "tasks.task_a.failure_rate must be between 0 and 1 (got 1.5)"),
        ("tasks: {task_a: {duration: fast}}", "tasks.task_a.duration must be a number (got 'fast')"),
        ("tasks: {task_c: {}}", "tasks.task_c is not a known key"),
        ("tasks: {task_a: {queue: queue_x}}", "tasks.task_a.queue must be a pool's queue"),
        ("tasks: {task_b: {queue: queue_a}}", "tasks.task_b.queue must differ from task_a's queue"),
        ("workers: {mode: kubernetes}", "workers.mode must be one of auto, docker, local (got 'kubernetes')"),
        ("workers: {prefetch_multiplier: 0}", "workers.prefetch_multiplier must be between 1 and 1000 (got 0)"),
        ("workers: {worker-a: {replicas: 11}}", "workers.worker-a.replicas must be between 0 and 10 (got 11)"),
        ("workers: {worker-a: {concurrency: 0}}", "workers.worker-a.concurrency must be between 1 and 256 (got 0)"),
        ("workers: {worker-b: {queue: queue_a}}", "workers.worker-b.queue must differ from worker-a's queue"),
        ("broker: {url: 5}", "broker.url must be a string (got 5)"),
        ("broker: {connect_timeout: 0}", "broker.connect_timeout must be between 0.1 and 60 (got 0)"),
        ("dispatch: {timeout: 0}", "dispatch.timeout must be between 0.1 and 86400 (got 0)"),
        ("- a\n- b", "the document must be a mapping"),
        ("1: x", "1 is not a known key"),
        ("tasks: {task_a: {duration: .nan}}", "tasks.task_a.duration must be a finite number (got nan)"),
        ("retry: {backoff_base: .inf}", "retry.backoff_base must be a finite number (got inf)"),
        ("broker: {url: 'redis://localhost:6379/0'}", "broker.url must be an AMQP URL"),
    ],
)
def test_bad_config_names_file_key_value_and_rule(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert message.startswith("cfg.yml: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.yml: YAML syntax error at line 2, column 4"):
        load_config(write(tmp_path, "name: a\n  b: c\n"))


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "cfg.yml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"cfg\.yml: not UTF-8 text"):
        load_config(path)


def test_broker_url_from_environment_must_be_amqp():
    with pytest.raises(ConfigError, match=r"\$BROKER_URL must be an AMQP URL"):
        parse_config({}, Path("c.yml"), {"BROKER_URL": "redis://x"})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yml")


def test_relative_path_is_relative_to_the_project_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "test-config.yml").write_text("name: the wrong one\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("test-config.yml")
    assert cfg.path == ROOT / "test-config.yml" and cfg.name == "Basic two-task execution test"


def test_dts_config_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DTS_CONFIG", str(write(tmp_path, "name: from env")))
    assert load_config().name == "from env"


def test_broker_url_environment_overrides_file():
    cfg = parse_config({"broker": {"url": "amqp://a@h1//"}}, Path("c.yml"), {"BROKER_URL": "amqp://b@h2//"})
    assert cfg.broker_url == "amqp://b@h2//"
    assert parse_config({"broker": {"url": "amqp://a@h1//"}}, Path("c.yml"), {}).broker_url == "amqp://a@h1//"


def test_env_file_gives_dedicated_vhost_url(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# written by make broker\nDTS_BROKER_USER=dts\nDTS_BROKER_PASSWORD=p@ss/word\nDTS_BROKER_VHOST=dts\n"
    )
    values = read_env_file(env)
    assert broker_url_from_env_file(values) == "amqp://dts:p%40ss%2Fword@localhost:5672/dts"
    assert broker_url_from_env_file({}) is None
    assert read_env_file(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [(0, 1.0, 30.0, 1.0), (1, 1.0, 30.0, 2.0), (2, 1.0, 30.0, 4.0), (5, 1.0, 30.0, 30.0),
     (0, 0.05, 1.0, 0.05), (3, 0.05, 1.0, 0.4), (10, 0.05, 1.0, 1.0), (4, 0.0, 1.0, 0.0)],
)  # fmt: skip
def test_backoff_is_exponential_and_capped(attempt, base, cap, expected):
    policy = RetryPolicy(backoff_base=base, backoff_max=cap, jitter=False)
    assert backoff_delay(attempt, policy) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_jitter_stays_between_half_and_full_delay(rand, factor):
    policy = RetryPolicy(backoff_base=2.0, backoff_max=100.0, jitter=True)
    assert backoff_delay(2, policy, rand=lambda: rand) == pytest.approx(8.0 * factor)


def test_schedule_has_one_delay_per_retry():
    assert backoff_schedule(RetryPolicy(max_retries=4, backoff_base=0.5, backoff_max=3, jitter=False)) == [
        0.5, 1.0, 2.0, 3.0,
    ]  # fmt: skip


def test_routes_send_each_task_to_its_own_queue():
    cfg = load_config(ROOT / "test-config.yml")
    assert route_table(cfg) == {
        "celery_app.task_a": {"queue": "queue_a", "routing_key": "queue_a"},
        "celery_app.task_b": {"queue": "queue_b", "routing_key": "queue_b"},
    }
    queues = declared_queues(cfg)
    assert [(q.name, q.durable, q.routing_key) for q in queues] == [
        ("queue_a", True, "queue_a"),
        ("queue_b", True, "queue_b"),
    ]


def test_reliability_settings():
    settings = celery_settings(load_config(ROOT / "test-config.yml"))
    assert settings["result_backend"] == "rpc://"
    assert settings["accept_content"] == ["json"] and settings["task_serializer"] == "json"
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["broker_transport_options"] == {"confirm_publish": True}
    assert settings["broker_connection_retry_on_startup"] is True


def test_worker_command_line():
    cfg = load_config(ROOT / "test-config.yml")
    argv = worker_argv(cfg.pools["worker-b"], "worker-b-2@%h", 1)
    assert argv[:4] == ["celery", "-A", "celery_app", "worker"]
    assert argv[argv.index("-Q") + 1] == "queue_b"
    assert argv[argv.index("-n") + 1] == "worker-b-2@%h"


@pytest.mark.parametrize(
    ("worker", "pool"),
    [("worker-a-1@vm", "worker-a"), ("worker-b-12@host.example", "worker-b"), ("worker-a@3f2c1d9e", "worker-a"),
     ("celery@vm", "celery"), ("", "")],
)  # fmt: skip
def test_pool_of_worker(worker, pool):
    assert pool_of_worker(worker) == pool
