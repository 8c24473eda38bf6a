"""Flower (`dts flower`, what `make flower` runs) against the session's real workers (2 + 2).

A real Flower process on a free port, the test vhost and a login of its own (given through the environment,
so the checkout's .env is not touched); everything is checked over HTTP, polling Flower with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time

import pytest
from helpers import ROOT, free_port, http_get, run_cli

pytestmark = pytest.mark.timeout(120)
DEADLINE = 30  # seconds for Flower to start, or to see what a dispatch did


def poll(check, what: str, proc: subprocess.Popen):
    """Call check() until it returns something truthy; fail with `what` (and Flower's output) at the deadline."""
    deadline, last = time.monotonic() + DEADLINE, None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"Flower exited with {proc.returncode}"
        try:
            last = check()
        except OSError as exc:  # not listening yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)  # polling interval
    pytest.fail(f"{what} within {DEADLINE}s (last: {str(last)[:500]})")


@pytest.fixture(scope="module")
def flower(settings, app, workers, config_path, tmp_path_factory):
    """A running `dts flower` whose event receiver sees all four workers."""
    port, login = free_port(), ("flower-test", secrets.token_urlsafe(16))
    out = tmp_path_factory.mktemp("flower") / "flower.log"
    env = dict(os.environ, DTS_FLOWER_USER=login[0], DTS_FLOWER_PASSWORD=login[1])
    with out.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dts", "flower", "--port", str(port), "--config", str(config_path)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    nodes = {n for names in workers.workers().values() for n in names}
    try:

        def all_alive():
            status, body = http_get(f"{url}/api/workers?status=true", login)
            return status == 200 and nodes <= {n for n, alive in json.loads(body).items() if alive}

        poll(all_alive, f"Flower's events did not show the workers {sorted(nodes)} alive", proc)
        yield {"url": url, "login": login, "proc": proc, "nodes": nodes}
    except BaseException:
        print(out.read_text()[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        app.control.disable_events()  # leave the session's workers as they were


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_flower_shows_both_pools_the_dispatched_tasks_and_counts_them(flower, config_path, clean_queues):
    url, login, proc = flower["url"], flower["login"], flower["proc"]
    dispatch = run_cli("dispatch.py", "--config", str(config_path), "--json", "--no-save")
    assert dispatch.returncode == 0, dispatch.stdout + dispatch.stderr
    ids = {t["task"]: t["task_id"] for t in json.loads(dispatch.stdout)["tasks"]}
    assert set(ids) == {"task_a", "task_b"}

    # /api/workers (inspect replies): every worker of both pools, by node name
    status, body = http_get(f"{url}/api/workers?refresh=true", login)
    assert status == 200, body
    listed = set(json.loads(body))
    assert flower["nodes"] <= listed
    assert {n.split("@")[0] for n in listed} == {"worker-a", "worker-b"}

    # /api/tasks (task events): both dispatched tasks, SUCCESS, each on a worker of its own pool
    def both_succeeded():
        status, body = http_get(f"{url}/api/tasks", login)
        tasks = json.loads(body) if status == 200 else {}
        done = {i: tasks[i] for i in ids.values() if tasks.get(i, {}).get("state") == "SUCCESS"}
        return done if len(done) == 2 else None

    tasks = poll(both_succeeded, "Flower did not list both dispatched tasks as SUCCESS", proc)
    assert tasks[ids["task_a"]]["name"] == "celery_app.task_a"
    assert tasks[ids["task_a"]]["worker"].startswith("worker-a@")
    assert tasks[ids["task_b"]]["name"] == "celery_app.task_b"
    assert tasks[ids["task_b"]]["worker"].startswith("worker-b@")

    # /metrics (Prometheus text, behind the same login): the succeeded events of both tasks, per pool
    status, metrics = http_get(f"{url}/metrics", login)
    assert status == 200
    assert "# TYPE flower_events_total counter" in metrics
    for task, pool in (("task_a", "worker-a"), ("task_b", "worker-b")):
        succeeded = metric_value(metrics, "flower_events_total", task=f"celery_app.{task}", type="task-succeeded")
        assert succeeded >= 1, f"no task-succeeded count for {task}"
        on_pool = [
            line
            for line in metrics.splitlines()
            if line.startswith("flower_events_total{")
            and f'task="celery_app.{task}"' in line
            and 'type="task-succeeded"' in line
        ]
        assert all(f'worker="{pool}@' in line for line in on_pool), on_pool
    assert metric_value(metrics, "flower_worker_online") >= 4


@pytest.mark.parametrize("path", ["/", "/tasks", "/api/workers", "/api/tasks", "/metrics"])
def test_flower_refuses_requests_without_the_login(flower, path):
    url, (user, password) = flower["url"], flower["login"]
    for login in (None, (user, "wrong-" + password), ("someone", password)):
        status, body = http_get(url + path, login)
        assert status == 401, f"{path} with {login and login[0]!r}: {status} {body[:200]}"
    assert http_get(url + path, (user, password))[0] == 200
    assert http_get(f"{url}/healthcheck") == (200, "OK")  # the one open page: liveness only, no data


def test_login_is_generated_once_into_env_keeping_other_keys(tmp_path):
    from dts.flower_auth import PASSWORD_KEY, USER_KEY, ensure_login

    env_file = tmp_path / ".env"
    env_file.write_text("DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\n")
    user, password, where = ensure_login(env_file, environ={})
    assert (user, len(password) >= 32, str(env_file) in where) == ("flower", True, True)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    from dts.config import read_env_file

    values = read_env_file(env_file)
    assert values == {
        "DTS_BROKER_USER": "u",
        "DTS_BROKER_PASSWORD": "p",
        "DTS_BROKER_VHOST": "v",
        USER_KEY: "flower",
        PASSWORD_KEY: password,
    }
    assert ensure_login(env_file, environ={})[:2] == (user, password)  # generated once
    assert ensure_login(env_file, environ={PASSWORD_KEY: "x", USER_KEY: "me"})[:2] == ("me", "x")  # env wins
