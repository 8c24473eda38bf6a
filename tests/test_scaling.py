"""Integration tests of scaling and load testing: real RabbitMQ, real `celery worker` processes.

Scaling runs scale.py as a subprocess on its own vhost (dts-test-scale-<checkout>) and run folder, so it never
touches the session's workers or a user's .run/. The local workers run under a supervisord of that run
folder; the tests find their processes the way a user would, with `supervisorctl -c .run/supervisord.conf`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.result import ResultSet
from helpers import CHECKOUT, ROOT, app_for, executions, fresh_vhost, vhost_url, write_config

pytestmark = pytest.mark.integration
SCALE_VHOST = f"dts-test-scale-{CHECKOUT}"  # two checkouts testing at once never share it


@pytest.fixture(scope="module")
def scaling(rabbitmq, tmp_path_factory):
    from dts.config import load_settings

    fresh_vhost(SCALE_VHOST, "guest")
    url = vhost_url(SCALE_VHOST)
    cfg_path = write_config(tmp_path_factory.mktemp("scale") / "scale.yml", replicas="1")
    run_dir = tmp_path_factory.mktemp("run")
    env = dict(os.environ, BROKER_URL=url, DTS_CONFIG=str(cfg_path), DTS_RUN_DIR=str(run_dir))
    app = app_for(load_settings(cfg_path).with_broker_url(url))

    def cli(command: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scale.py", command, *args, "--engine", "local"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    started = cli("up")
    assert started.returncode == 0, started.stderr
    cli.run_dir = run_dir
    yield cli, app
    cli("down")
    app.close()


def supervisorctl(run_dir, *args: str) -> subprocess.CompletedProcess:
    conf = str(run_dir / "supervisord.conf")
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def worker_pid(run_dir, program: str) -> int:
    """The pid of the worker's celery main process, from supervisord (0: not running)."""
    return int(supervisorctl(run_dir, "pid", program).stdout.split()[0])


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        pid = todo.pop()
        children = {child for child, parent in parents.items() if parent == pid}
        todo += children - found
        found |= children
    return found


def status(cli) -> dict:
    proc = cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["pool"]: row for row in json.loads(proc.stdout)["pools"]}


def test_local_scale_up_and_down_changes_the_live_consumer_count(scaling):
    cli, _ = scaling
    up = cli("set", "worker-a", "3")
    assert up.returncode == 0, up.stderr
    assert "worker-a: 3 worker(s) up (+2)" in up.stdout
    row = status(cli)["worker-a"]
    assert (len(row["workers"]), row["alive"], row["consumers"], row["slots"]) == (3, 3, 3, 3)
    host = socket.gethostname()
    assert {w["name"] for w in row["workers"]} == {f"worker-a@{host}-{i}" for i in (1, 2, 3)}
    down = cli("set", "queue_a", "1")  # a pool named by its queue
    assert down.returncode == 0, down.stderr
    row = status(cli)["worker-a"]
    assert (len(row["workers"]), row["consumers"]) == (1, 1)
    both = cli("all", "2")
    assert both.returncode == 0, both.stderr
    rows = status(cli)
    assert rows["worker-a"]["consumers"] == 2 and rows["worker-b"]["consumers"] == 2


def test_scale_down_during_a_load_loses_nothing(scaling):
    cli, app = scaling
    assert cli("set", "worker-a", "3").returncode == 0
    sent = [app.send_task("celery_app.task_a", kwargs={"duration": 0.3}) for _ in range(18)]
    sent[0].get(timeout=30)  # the load is under way on all three workers
    down = cli("set", "worker-a", "1")  # warm shutdown of worker-a-3 and worker-a-2 while tasks run and wait
    assert down.returncode == 0, down.stderr
    values = ResultSet(sent).get(timeout=60)
    assert sorted(v["task_id"] for v in values) == sorted(r.id for r in sent)  # every task came back
    assert set(executions(cli.run_dir, [r.id for r in sent]).values()) == {1}  # and ran exactly once
    assert len({v["worker"] for v in values}) == 3  # the stopped workers had taken part
    logs = "".join(p.read_text(errors="replace") for p in cli.run_dir.glob("worker-a-*.log"))
    assert "WorkerLostError" not in logs  # SIGTERM reached only the main process: its pool finished the task
    assert status(cli)["worker-a"]["consumers"] == 1


def test_a_killed_worker_loses_no_task(scaling):
    """SIGKILL (no warm shutdown) of the worker running a task: with acks_late the unacknowledged
    message is redelivered when the connection drops, and another worker runs it."""
    cli, app = scaling
    assert cli("set", "worker-a", "2").returncode == 0
    result = app.send_task("celery_app.task_a", kwargs={"duration": 3.0})
    deadline = time.monotonic() + 30
    running_on = None
    while running_on is None:  # poll the workers' own state until one reports the task active
        active = app.control.inspect(timeout=1.0).active() or {}
        running_on = next((w for w, tasks in active.items() if any(t["id"] == result.id for t in tasks)), None)
        assert time.monotonic() < deadline, "the task never started"
    index = running_on.rsplit("-", 1)[1]  # worker-a@<host>-<index>
    pid = worker_pid(cli.run_dir, f"worker-a-{index}")
    os.killpg(pid, signal.SIGKILL)  # the worker and its pool process, no chance to ack or requeue
    value = result.get(timeout=60)
    assert value["message"] == "Hello from Task A"
    assert value["worker"] != running_on  # redelivered and run by the surviving worker


def test_a_killed_worker_is_restarted_and_no_task_is_lost(scaling):
    """Local workers are supervised like compose services: SIGKILL the celery main process of one worker
    during a burst, and supervisord starts it again (a new process, same node name, answering ping);
    every task of the burst comes back (at most the one task that was running may run twice)."""
    cli, app = scaling
    assert cli("set", "worker-a", "2").returncode == 0
    node = f"worker-a@{socket.gethostname()}-2"
    sent = [app.send_task("celery_app.task_a", kwargs={"duration": 0.4}) for _ in range(20)]
    ids = {r.id for r in sent}
    deadline = time.monotonic() + 30
    while not any(t["id"] in ids for t in (app.control.inspect([node], timeout=1.0).active() or {}).get(node, [])):
        assert time.monotonic() < deadline, f"{node} never ran a task of the burst"
    pid = worker_pid(cli.run_dir, "worker-a-2")
    os.kill(pid, signal.SIGKILL)  # the main process only, mid-task; its pool process follows it (PDEATHSIG)
    deadline = time.monotonic() + 30
    while not (
        (new := worker_pid(cli.run_dir, "worker-a-2")) not in (0, pid)
        and app.control.ping(destination=[node], timeout=0.5)
    ):
        assert time.monotonic() < deadline, f"{node} was not restarted (supervisord pid now {new})"
    values = ResultSet(sent).get(timeout=60)
    assert sorted(v["task_id"] for v in values) == sorted(ids)  # every task came back
    runs = executions(cli.run_dir, ids)
    # The task the killed worker was running may finish in its orphaned pool process (result sent, but the
    # dead main process never logs "succeeded"): at most that one task lacks a log line, and nothing ran
    # to success twice except, possibly, that task (at-least-once: its message was not acked).
    silent = {tid for tid, n in runs.items() if n == 0}
    assert len(silent) <= 1 and all(v["worker"] == node for v in values if v["task_id"] in silent), runs
    assert sum(1 for n in runs.values() if n > 1) <= 1 and max(runs.values()) <= 2, runs
    row = status(cli)["worker-a"]
    assert (len(row["workers"]), row["alive"], row["consumers"]) == (2, 2, 2)
    assert node in {w["name"] for w in row["workers"]}


def test_down_leaves_no_process_behind(scaling):
    """`scale.py down` stops every worker and then supervisord itself; `up` starts them again."""
    from dts.engines.supervise import alive

    cli, _ = scaling
    supervisord = int((cli.run_dir / "supervisord.pid").read_text())
    processes = {supervisord} | descendants(supervisord)
    assert len(processes) >= 3  # supervisord, worker-a and worker-b at least
    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert [p for p in processes if alive(p)] == []  # (a zombie is gone: this machine's init reaps lazily)
    assert not (cli.run_dir / "supervisor.sock").exists()
    assert supervisorctl(cli.run_dir, "status").returncode != 0  # no supervisord answers
    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert {row["consumers"] for row in status(cli).values()} == {1}


def test_scale_bad_input_exits_2(scaling):
    cli, _ = scaling
    for args, message in [
        (("worker-a", "-1"), "must be an integer from 0 to 1000"),
        (("worker-a", "lots"), "must be an integer"),
        (("worker-a", "11"), "max_replicas=10"),
        (("queue_c", "2"), "unknown pool 'queue_c'"),
    ]:
        proc = cli("set", *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_status_exits_4_when_a_pool_has_no_consumer(scaling):
    cli, _ = scaling
    assert cli("set", "worker-b", "0").returncode == 0
    proc = cli("status")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert cli("set", "worker-b", "1").returncode == 0
    assert cli("status").returncode == 0


def test_load_test_20_plus_20(config_path, workers, clean_queues, tmp_path, capsys):
    import load_test

    out, png = tmp_path / "run.json", tmp_path / "run.png"
    code = load_test.main(
        ["--config", str(config_path), "--tasks", "20", "--json", "--output", str(out), "--plot", str(png)]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert (report["tasks"], report["completed"], report["failed"]) == (40, 40, 0)
    assert sum(report["per_worker"].values()) == 40
    assert report["slots"] == {"worker-a": 2, "worker-b": 2}  # asked from the live workers
    assert report["task_types"]["task_a"]["pool"] == "worker-a" and report["task_types"]["task_b"]["pool"] == "worker-b"
    running = workers.workers()
    assert set(report["per_worker"]) == set(running["worker-a"] + running["worker-b"])  # every worker took part
    lat = report["latency"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["execution"]["max"] < lat["max"]
    assert 0 < report["efficiency"] <= 1
    doc = json.loads(out.read_text())
    assert doc["schema"] == 3 and len(doc["runs"][0]["samples"]) == 40
    assert all(s["ok"] and s["worker"] for s in doc["runs"][0]["samples"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_test_failures_and_missed_thresholds_exit_1(config_path, workers, clean_queues, tmp_path, capsys):
    import load_test

    assert load_test.main(["--config", str(config_path), "--tasks", "2", "--fail-rate", "1"]) == 1
    out = capsys.readouterr().out
    assert "Tasks: 4 sent, 0 completed, 4 failed, 0 unknown" in out and "FAILED: 4 task(s) failed\n" in out
    strict = write_config(tmp_path / "strict.yml")
    strict.write_text(strict.read_text() + "load_test: {max_p95: 0.001}\n")
    assert load_test.main(["--config", str(strict), "--tasks", "2"]) == 1
    assert "THRESHOLD: p95 latency" in capsys.readouterr().out
