"""Integration tests of `scale.py health` and `scale.py status [--watch] [--json]` (and `make health`):
real RabbitMQ, real `celery worker` processes of a LocalEngine on a vhost and run folder of their own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
from helpers import CHECKOUT, ROOT, app_for, fresh_vhost, run_cli, vhost_url, write_config

pytestmark = pytest.mark.integration
VHOST = f"dts-test-health-{CHECKOUT}"


@pytest.fixture(scope="module")
def pools(rabbitmq, tmp_path_factory):
    """One worker-a and one worker-b; `cli(...)` runs scale.py against them."""
    from dts.config import load_settings
    from dts.testing import local_workers

    fresh_vhost(VHOST, "guest")
    path = write_config(tmp_path_factory.mktemp("health") / "health.yml", replicas="1")
    settings = load_settings(path).with_broker_url(vhost_url(VHOST))
    app = app_for(settings)
    run_dir = tmp_path_factory.mktemp("run")
    env = {"BROKER_URL": settings.broker.url, "DTS_CONFIG": str(path), "DTS_RUN_DIR": str(run_dir), "CI": ""}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return run_cli("scale.py", *args, "--engine", "local", env={**env, **extra}, timeout=60)

    cli.env, cli.run_dir = env, run_dir
    with local_workers(settings, app, run_dir) as engine:
        yield cli, engine
    app.close()


def table(stdout: str, first: str) -> dict[str, list[str]]:
    """The rows of the text table whose header starts with `first`, by their first cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(" "):  # the end, or a worker's detail line
            break
        rows[line.split()[0]] = line.split()[1:]
    return rows


def test_health_all_up_exits_0_with_every_queue_consumed_and_every_worker_pinged(pools):
    cli, engine = pools
    proc = cli("health")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    queues = table(proc.stdout, "queue")
    assert set(queues) == {"queue_a", "queue_b"}
    assert queues["queue_a"][0] == "worker-a" and queues["queue_b"][0] == "worker-b"
    assert all(int(cells[1]) >= 1 for cells in queues.values())  # consumers
    workers = table(proc.stdout, "worker")
    assert set(workers) == {n for nodes in engine.workers().values() for n in nodes}
    assert all(cells[-1] == "ok" for cells in workers.values())
    assert proc.stdout.rstrip().endswith("healthy") and proc.stderr == ""
    doc = json.loads(cli("health", "--json").stdout)
    assert (doc["exit_code"], doc["problems"], doc["broker_ok"]) == (0, [], True)
    assert {q["queue"]: q["consumers"] for q in doc["queues"]} == {"queue_a": 1, "queue_b": 1}


def test_one_pool_down_exits_4_naming_its_queue_and_pool(pools):
    cli, engine = pools
    engine.resize({"worker-b": 0})
    try:
        proc = cli("health")
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert "UNHEALTHY (exit 4): queue_b (pool worker-b) has no consumer" in proc.stdout
        assert table(proc.stdout, "queue")["queue_b"][1] == "0"
        assert "queue_a (pool worker-a)" not in proc.stdout
        status = cli("status", "--json")
        assert status.returncode == 4
        assert json.loads(status.stdout)["problems"] == ["queue_b (pool worker-b) has no consumer"]
    finally:
        engine.resize({"worker-b": 1})
    assert cli("health").returncode == 0


def test_a_worker_that_does_not_answer_ping_exits_4(pools):
    """A stopped (SIGSTOP) worker keeps its broker connection, so its queue still shows a consumer: only
    the ping tells."""
    cli, engine = pools
    node = engine.workers()["worker-a"][0]
    pid = engine.running()["worker-a"][1]  # the celery main process, as supervisord reports it
    os.killpg(pid, signal.SIGSTOP)
    try:
        proc = cli("health")
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"UNHEALTHY (exit 4): {node} (pool worker-a) does not answer ping" in proc.stdout
    assert table(proc.stdout, "worker")[node][-1] == "REPLY"  # "NO REPLY"
    assert table(proc.stdout, "queue")["queue_a"][1] == "1"


@pytest.mark.parametrize("command", ["health", "status"])
def test_broker_unreachable_exits_3_with_one_line(pools, command):
    cli, _ = pools
    proc = cli(command, BROKER_URL="amqp://guest:guest@127.0.0.1:1/nowhere")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("scale.py: error: cannot reach the broker at amqp://guest:***@127.0.0.1:1/nowhere")
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["health", "status"])
def test_a_login_the_broker_refuses_exits_3_with_one_line(pools, command):
    cli, _ = pools
    proc = cli(command, BROKER_URL="amqp://nobody:wrong@localhost:5672/nowhere")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "refused the login" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_status_watch_refreshes_with_tasks_per_second(pools):
    cli, _ = pools
    proc = cli("status", "--watch", "--count", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = proc.stdout.split("--- ")[1:]
    assert len(frames) == 2
    for index, frame in enumerate(frames):
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\n", frame)  # a timestamp header
        rows = table(frame, "pool")
        assert set(rows) == {"worker-a", "worker-b"}
        for cells in rows.values():  # queues wanted running slots consumers ready unacked tasks/s
            assert cells[1:5] == ["1", "1", "1", "1"]
            rate = cells[-1]
            assert rate == "-" if index == 0 else float(rate) >= 0
    lines = cli("status", "--watch", "--count", "2", "--interval", "0.2", "--json").stdout.splitlines()
    docs = [json.loads(line) for line in lines]  # one JSON document per refresh
    assert [[p["tasks_per_s"] is None for p in d["pools"]] for d in docs] == [[True, True], [False, False]]


def test_status_json_parses_and_counts_processed_tasks(pools):
    cli, engine = pools
    app = engine.app
    app.send_task("celery_app.task_a", kwargs={"duration": 0}).get(timeout=30)
    proc = cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rows = {p["pool"]: p for p in doc["pools"]}
    assert rows["worker-a"]["processed"] >= 1 and rows["worker-a"]["unacked"] == 0
    assert (rows["worker-a"]["alive"], len(rows["worker-a"]["workers"])) == (1, 1)
    assert doc["exit_code"] == 0 and doc["broker"].endswith(VHOST) and "guest:***@" in doc["broker"]


def test_make_health_and_make_status_watch(pools):
    cli, _ = pools
    env = dict(os.environ, **cli.env)
    proc = subprocess.run(
        ["make", "-s", "health", "ENGINE=local"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthy" in proc.stdout
    dry = subprocess.run(["make", "-n", "status", "WATCH=1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "scale.py status --watch" in dry.stdout
    # make cannot pass the command's exit 3 on: it exits 2, as its help says
    env["BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1/nowhere"
    down = subprocess.run(["make", "-s", "health", "ENGINE=local"], cwd=ROOT, env=env, capture_output=True, text=True)
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert down.returncode == 2 and "cannot reach the broker" in down.stderr, down.stderr
    assert "make exits 2 on any failure (`dts health`: 3 broker" in listed
