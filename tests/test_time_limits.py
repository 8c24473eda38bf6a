"""Per-task time limits on real workers (real RabbitMQ, prefork workers started from a config with tiny limits):
past the soft limit a task fails with the reason and is not retried; past the hard limit the worker kills the
process running it and reports TimeLimitExceeded; either way the message is not redelivered and the same
worker serves the next task."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import CHECKOUT, fresh_vhost, local_fleet, run_cli, vhost_url, write_config

pytestmark = pytest.mark.integration
VHOST = f"dts-test-limits-{CHECKOUT}"
SOFT, HARD = 0.5, 1.0  # task_a: soft 0.5 s, hard 1 s; task_b: hard 1 s only (soft unset)
OVER = 5.0  # seconds of work: far past both limits (a limit that does not fire lets it succeed: the test fails)


@pytest.fixture(scope="module")
def limited(rabbitmq, tmp_path_factory):

    fresh_vhost(VHOST, "guest")
    path = write_config(
        tmp_path_factory.mktemp("limits") / "limits.yml", replicas="1", duration_a=str(OVER), duration_b=str(OVER)
    )
    doc = yaml.safe_load(path.read_text())
    doc["tasks"]["task_a"].update(soft_time_limit=SOFT, time_limit=HARD)
    doc["tasks"]["task_b"].update(time_limit=HARD)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with local_fleet(path, vhost_url(VHOST), tmp_path_factory.mktemp("run")) as (settings, app, engine):
        yield path, settings, app, engine


def worker_of(engine, pool: str) -> str:
    (node,) = engine.workers()[pool]
    return node


def stats(app, node: str) -> dict:
    reply = app.control.inspect(destination=[node], timeout=5).stats() or {}
    assert node in reply, f"{node} did not answer stats: {reply}"
    return reply[node]


def busy(app, node: str) -> list[str]:
    """Ids of the tasks the worker is running or holds reserved (a task whose result is in may still be listed
    for a moment: the worker records its end after storing the result)."""
    inspect = app.control.inspect(destination=[node], timeout=5)
    return [t["id"] for reply in (inspect.active(), inspect.reserved()) for t in (reply or {}).get(node, [])]


def queue_depth(app, queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def send(app, settings, task: str, duration: float):
    return app.send_task(f"celery_app.{task}", kwargs={"duration": duration}, queue=settings.tasks[task].queue)


def failure_of(res) -> BaseException:
    value = res.get(timeout=60, propagate=False)
    assert res.failed(), f"expected a failure, got {res.state}: {value}"
    return value


def test_over_the_soft_limit_the_task_fails_with_the_reason_once_and_the_worker_serves_on(limited):
    _, settings, app, engine = limited
    node, pid = worker_of(engine, "worker-a"), engine.running()["worker-a"]
    before = stats(app, node)
    timed_out = send(app, settings, "task_a", OVER)
    exc = failure_of(timed_out)
    assert type(exc).__name__ == "TimeLimitError"
    assert str(exc).startswith(f"task_a exceeded soft time limit of {SOFT:g}s (stopped after 0.")
    assert str(exc).endswith("not retried")
    result = send(app, settings, "task_a", 0).get(timeout=60)  # the same worker serves the next task
    assert result["worker"] == node and result["retries"] == 0
    after = stats(app, node)
    assert engine.running()["worker-a"] == pid
    assert after["pool"]["processes"] == before["pool"]["processes"]  # soft limit: the child process lives on
    # run once, not retried, not redelivered: exactly two task_a runs (the failed one and the next one)
    assert after["total"].get("celery_app.task_a", 0) - before["total"].get("celery_app.task_a", 0) == 2
    assert timed_out.id not in busy(app, node) and queue_depth(app, settings.tasks["task_a"].queue) == 0


def test_over_the_hard_limit_the_process_is_killed_the_task_fails_once_and_the_worker_serves_on(limited):
    _, settings, app, engine = limited
    node, pid = worker_of(engine, "worker-b"), engine.running()["worker-b"]
    before = stats(app, node)
    timed_out = send(app, settings, "task_b", OVER)
    exc = failure_of(timed_out)
    assert type(exc).__name__ == "TimeLimitExceeded" and exc.args == (HARD,)
    result = send(app, settings, "task_b", 0).get(timeout=60)
    assert result["worker"] == node and result["retries"] == 0
    after = stats(app, node)
    assert engine.running()["worker-b"] == pid  # the worker itself lives on ...
    assert not set(after["pool"]["processes"]) & set(before["pool"]["processes"])  # ... its child was replaced
    # acks_late + reject_on_worker_lost: the killed task is acked (task_acks_on_timeout), not requeued
    assert after["total"].get("celery_app.task_b", 0) - before["total"].get("celery_app.task_b", 0) == 2
    assert timed_out.id not in busy(app, node) and queue_depth(app, settings.tasks["task_b"].queue) == 0


def test_dispatch_reports_both_failures_with_their_reasons(limited):
    path, settings, _, _ = limited
    proc = run_cli("dispatch.py", "--config", str(path), "--no-save", env={"BROKER_URL": settings.broker.url})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())  # a result line goes on under itself past 88 columns
    assert f"Result from task_a: FAILED: TimeLimitError: task_a exceeded soft time limit of {SOFT:g}s" in said
    assert (
        f"Result from task_b: FAILED: TimeLimitExceeded: task_b exceeded hard time limit of {HARD:g}s; "
        "the worker killed its process; not retried"
    ) in said, proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("task_a ", "task_b "))]
    assert [row.split()[1] for row in rows] == ["FAILED:", "FAILED:"], proc.stdout  # the table's rows
    assert "FAILED: task_a, task_b" in proc.stdout
    proc = run_cli("dispatch.py", "--config", str(path), "--no-save", "--json", env={"BROKER_URL": settings.broker.url})
    errors = {t["task"]: t["error"] for t in json.loads(proc.stdout)["tasks"]}
    assert errors["task_a"].startswith(f"TimeLimitError: task_a exceeded soft time limit of {SOFT:g}s")
    assert errors["task_b"].startswith(f"TimeLimitExceeded: task_b exceeded hard time limit of {HARD:g}s")
