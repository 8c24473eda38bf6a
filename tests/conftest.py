"""Fixtures: a real RabbitMQ (own vhosts, purged around each test) and real `celery worker` processes.

Integration tests skip with the reason when no broker answers on localhost:5672, except under CI=true,
where a missing broker fails the run. Every CLI and worker the tests start talks to the test vhosts,
never to a user's own system (BROKER_URL wins over test-config.yml and .env).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    CHECKOUT,
    IDLE_VHOST,
    IN_CI,
    TEST_BROKER_URL,
    TEST_VHOST,
    broker_answers,
    forget_test_names,
    write_config,
)


@pytest.fixture(scope="session", autouse=True)
def test_broker_url(tmp_path_factory):
    """Point everything the tests start at the test vhost, and their result files at a temporary folder;
    logs in each place's default format, whatever the caller's LOG_FORMAT."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BROKER_URL", TEST_BROKER_URL)
    mp.setenv("DTS_RESULTS_DIR", str(tmp_path_factory.mktemp("results")))
    mp.delenv("LOG_FORMAT", raising=False)  # each format's default (text on the host, JSON in containers)
    yield TEST_BROKER_URL
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def forget_test_vhosts():
    """The vhosts and users this checkout's tests made on the host's RabbitMQ are deleted when the session
    ends. Under CI=true (one suite at a time on the machine) those an interrupted earlier run left go first."""
    if IN_CI:
        forget_test_names()
    yield
    forget_test_names(CHECKOUT)


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """A real RabbitMQ with the test vhosts, created afresh for the session; skip (or fail under CI=true)
    when there is none."""
    from dts.errors import CliError
    from dts.provision import ensure_vhost, rabbitmqctl

    reason = None
    if not broker_answers():
        reason = "no RabbitMQ answers on localhost:5672 (start one with `make broker`)"
    else:
        try:
            for vhost in (TEST_VHOST, IDLE_VHOST):  # fresh: queues declared by an older checkout have other arguments
                if vhost in rabbitmqctl("list_vhosts", "name").stdout.split():
                    rabbitmqctl("delete_vhost", vhost)
                ensure_vhost(vhost, "guest")
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
def settings(rabbitmq, config_path):
    from dts.config import load_settings

    return load_settings(config_path)


@pytest.fixture(scope="session")
def app(settings):
    """The Celery app made from the session's settings (dts.app), as every command makes its own."""
    from dts.app import make_app

    return make_app(settings)


@pytest.fixture(scope="session")
def tasks(app) -> dict:
    """{"task_a": ..., "task_b": ...}: the app's simulated tasks."""
    from dts.app import SIMULATED, task_name

    return {name: app.tasks[task_name(name)] for name in SIMULATED}


@pytest.fixture(scope="session")
def workers(settings, app, tmp_path_factory):
    """Two worker-a and two worker-b `celery worker` processes for the whole session."""
    from dts.testing import local_workers

    with local_workers(settings, app, tmp_path_factory.mktemp("run")) as engine:
        yield engine


@pytest.fixture
def clean_queues(settings, app, workers):
    """Purge the task queues of the test vhost before and after a test."""

    def purge():
        with app.connection_for_write() as conn:
            for queue in settings.queues:
                conn.default_channel.queue_purge(queue)

    purge()
    yield
    purge()
