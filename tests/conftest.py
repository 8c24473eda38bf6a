"""Fixtures: a real RabbitMQ (own vhosts, purged around each test) and real `celery worker` processes.

Integration tests skip with the reason when no broker answers on localhost:5672, except under CI=true,
where a missing broker fails the run.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEST_VHOST = "dts-test"
IDLE_VHOST = "dts-test-idle"  # a vhost where no worker ever runs
BROKER_HOST = os.environ.get("DTS_TEST_BROKER_HOST", "localhost")
TEST_BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:5672/{TEST_VHOST}"
IDLE_BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:5672/{IDLE_VHOST}"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Every CLI and worker started by the tests talks to the test vhost, never to a user's own system
# (BROKER_URL wins over test-config.yml and over a .env written by `make broker`).
os.environ["BROKER_URL"] = TEST_BROKER_URL


def write_config(path: Path, **overrides: str) -> Path:
    """A config for tests: seed durations, fast deterministic backoff (no jitter)."""
    values = {
        "duration_a": "0.1", "duration_b": "0.2", "failure_rate": "0.0", "max_retries": "3",
        "backoff_base": "0.05", "replicas": "2", "timeout": "30", "stop_timeout": "30",
    }  # fmt: skip
    values.update(overrides)
    path.write_text(
        textwrap.dedent(f"""\
        name: Integration test config
        broker:
          url: {TEST_BROKER_URL}
          connect_timeout: 5
        tasks:
          task_a: {{queue: queue_a, duration: {values["duration_a"]}, failure_rate: {values["failure_rate"]}}}
          task_b: {{queue: queue_b, duration: {values["duration_b"]}, failure_rate: {values["failure_rate"]}}}
        retry: {{max_retries: {values["max_retries"]}, backoff_base: {values["backoff_base"]}, backoff_max: 1.0, jitter: false}}
        workers:
          mode: local
          stop_timeout: {values["stop_timeout"]}
          start_timeout: 60
          worker-a: {{queue: queue_a, replicas: {values["replicas"]}, concurrency: 1}}
          worker-b: {{queue: queue_b, replicas: {values["replicas"]}, concurrency: 1}}
        dispatch:
          timeout: {values["timeout"]}
        """)
    )
    return path


def broker_answers(host: str = BROKER_HOST, port: int = 5672) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """A real RabbitMQ with the test vhosts; skip (or fail under CI=true) when there is none."""
    reason = None
    if not broker_answers():
        reason = f"no RabbitMQ answers on {BROKER_HOST}:5672 (start one with `make broker`)"
    else:
        from broker import ensure_vhost

        from celery_app import CliError

        try:
            ensure_vhost(TEST_VHOST, "guest")
            ensure_vhost(IDLE_VHOST, "guest")
        except CliError as exc:
            reason = f"cannot create the test vhosts: {exc}"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return TEST_BROKER_URL


@pytest.fixture(scope="session")
def config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "test-config.yml")


@pytest.fixture(scope="session")
def config(rabbitmq, config_path):
    from celery_app import load_config, use_config

    cfg = load_config(config_path)
    use_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def workers(config, tmp_path_factory):
    """Two worker-a and two worker-b `celery worker` processes for the whole session."""
    from pools import LocalPool

    pool = LocalPool(config, run_dir=tmp_path_factory.mktemp("run"))
    pool.up()
    yield pool
    pool.down()


@pytest.fixture
def clean_queues(config, workers):
    """Purge the task queues of the test vhost before and after a test."""
    from celery_app import app

    def purge():
        with app.connection_for_write() as conn:
            for spec in config.pools.values():
                conn.default_channel.queue_purge(spec.queue)

    purge()
    yield
    purge()
