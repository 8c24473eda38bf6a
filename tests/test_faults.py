"""Fault tests: faults injected into real runs, each run's tasks counted (sent, completed, unknown, lost)
and each task's executions counted in the workers' logs (a duplicate shows as a second "succeeded").

The broker faults need a broker that may be stopped: a RabbitMQ node of its own (port 5673, its own data
directory, started and stopped here), so nothing else on the machine (a user's broker, other tests) sees
the restarts. Real local `celery worker` processes (1 + 1) run against it. Under CI=true a missing
`rabbitmq-server` fails the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    app_for,
    ended_for_the_broker,
    executions,
    finish,
    popen_cli,
    require_rabbitmq_server,
    start_node,
    tally,
    wait_for_line,
    write_config,
)

from dts.amqp.deadline import Deadline

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

PORT = 5673
NODE = "dts-faults@localhost"


@pytest.fixture(scope="module")
def fault_broker():
    require_rabbitmq_server("the fault tests run a node of their own")
    broker = start_node(NODE, PORT)
    yield broker
    broker.shutdown()


@pytest.fixture(scope="module")
def fleet(fault_broker, tmp_path_factory):
    """1 worker-a + 1 worker-b on the fault broker. Tasks take 5 s unless the client says otherwise (the
    load tests do: --duration-a/-b), so a dispatch is still waiting when the fault comes."""
    from dts.config import load_settings
    from dts.testing import local_workers

    path = write_config(
        tmp_path_factory.mktemp("faults") / "faults.yml", replicas="1", duration_a="5", duration_b="5", timeout="20"
    )
    # worker-a autoscaled at its one replica (only `scale.py auto` reads it: the autoscaler test)
    path.write_text(path.read_text().replace("concurrency: 1}", "concurrency: 1, autoscale: {min: 1, max: 1}}", 1))
    settings = load_settings(path).with_broker_url(fault_broker.url)
    app = app_for(settings)
    run_dir = tmp_path_factory.mktemp("run")
    env = {"BROKER_URL": fault_broker.url, "DTS_CONFIG": str(path), "CI": "true"}
    with local_workers(settings, app, run_dir) as engine:
        fleet = {"engine": engine, "app": app, "settings": settings, "env": env, "config": path, "run_dir": run_dir}
        yield fleet
    fleet["app"].close()  # the app the tests ended with (fresh() makes a new one after a broker restart)


@pytest.fixture
def fresh(fleet, fault_broker):
    """Before and after each test: the broker up, both pools at 1 worker consuming, the task queues empty."""
    from dts.amqp.checks import queue_stats

    def reset():
        if fault_broker.ctl("eval", "rabbit:is_running().").strip() != "true":
            fault_broker.start()
        for attempt in range(3):  # a connection from before a broker restart may still be handed out once
            fleet["app"].close()
            fleet["app"] = fleet["engine"].app = app_for(fleet["settings"])
            try:
                fleet["engine"].resize({"worker-a": 1, "worker-b": 1})
                break
            except OSError:
                if attempt == 2:
                    raise
        with fleet["app"].connection_for_write() as conn:
            for queue in fleet["settings"].queues:
                conn.default_channel.queue_purge(queue)
        deadline = time.monotonic() + 60  # workers reconnect on their own after a broker restart
        while not all(
            s.consumers for s in queue_stats(fleet["app"], fleet["settings"].queues, Deadline.after(5)).values()
        ):
            assert time.monotonic() < deadline, "the workers did not come back to their queues"

    reset()
    yield fleet
    reset()


def popen(fleet, *args: str) -> subprocess.Popen:
    return popen_cli(fleet["env"], *args)


def queued_ids(app, queue: str) -> set[str]:
    """The task ids of the messages waiting in `queue` (taken off it: the tests purge queues anyway)."""
    ids = set()
    with app.connection_for_write() as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            ids.add(message.headers["id"])
    return ids


def test_broker_restart_mid_burst_loses_no_result(fresh, fault_broker, tmp_path):
    out = tmp_path / "load.json"
    proc = popen(
        fresh,
        "load_test.py",
        "--tasks",
        "400",
        "--duration-a",
        "0.01",
        "--duration-b",
        "0.01",
        "--output",
        str(out),
        "--timeout",
        "120",
    )
    first = wait_for_line(proc.stderr, r"^progress: (\d+)/(\d+)")  # results are coming in
    assert int(first.group(1)) < int(first.group(2)), "the burst ended before the fault: make it longer"
    fault_broker.stop()
    fault_broker.start()
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    counts = tally(samples, fresh["run_dir"])
    print("broker restart mid-burst:", counts)
    assert counts["sent"] == 800 and counts["completed"] == 800 and counts["unknown"] == 0 and counts["lost"] == 0
    assert "broker connection lost" in stderr and "broker connection back" in stderr  # it noticed, and recovered
    assert "Traceback" not in stdout + stderr


def test_broker_gone_during_dispatch_exits_3_with_the_partial_report(fresh, fault_broker, tmp_path):
    out = tmp_path / "dispatch.json"
    t0 = time.monotonic()
    proc = popen(fresh, "dispatch.py", "--timeout", "6", "--output", str(out))
    wait_for_line(proc.stdout, r" SENT +task_[ab] ")  # published: now the wait is on
    fault_broker.stop()
    stdout, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, stdout + stderr
    assert stderr.splitlines()[-1].startswith("dispatch.py: error: lost the broker connection")
    assert "Traceback" not in stdout + stderr
    doc = json.loads(out.read_text())  # the partial report, whole (written atomically)
    assert doc["exit_code"] == 3
    states = {t["task"]: t["state"] for t in doc["tasks"]}
    assert states == {"task_a": "unknown", "task_b": "unknown"}  # 5 s tasks: no result could come back
    assert elapsed < 6 + 5  # the wait ended at its deadline (plus start-up), not later


def test_broker_gone_during_load_test_start_up_exits_3_and_writes_nothing(fresh, fault_broker, tmp_path):
    """The start-up asks the workers for their slots (inspect). Paused workers (SIGSTOP: still the queues'
    consumers, but silent) hold it there until its timeout: the broker goes away in that window."""
    out = tmp_path / "load.json"
    pids = [pid for workers in fresh["engine"].running().values() for pid in workers.values()]
    assert len(pids) == 2
    before = fault_broker.connections()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        proc = popen(
            fresh, "load_test.py", "--tasks", "10", "--duration-a", "0", "--duration-b", "0", "--output", str(out)
        )
        deadline = time.monotonic() + 30
        while fault_broker.connections() <= before:  # the load test has connected: its start-up checks run
            assert time.monotonic() < deadline and proc.poll() is None, "the load test never connected"
        fault_broker.stop()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 3, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("load_test.py: error:"), stderr
    assert "Traceback" not in stdout + stderr
    assert list(tmp_path.iterdir()) == []  # no result file, not even half of one


def test_a_pool_killed_during_a_load_test_is_reported_and_exits_4(fresh, tmp_path):
    from dts.amqp.checks import queue_stats

    out = tmp_path / "load.json"
    proc = popen(
        fresh,
        "load_test.py",
        "--tasks",
        "30",
        "--duration-a",
        "0.01",
        "--duration-b",
        "0.3",
        "--output",
        str(out),
        "--timeout",
        "10",
    )
    app = fresh["app"]
    deadline = time.monotonic() + 30
    while queue_stats(app, ["queue_b"], Deadline.after(5))["queue_b"].ready == 0:  # the load is published
        assert time.monotonic() < deadline and proc.poll() is None, "the load never reached queue_b"
    fresh["engine"].resize({"worker-b": 0})  # the whole pool goes (warm shutdown: its running task finishes)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stdout + stderr
    assert "queue_b has no consumer any more: pool worker-b lost its workers" in stderr
    assert stderr.splitlines()[-1].startswith("load_test.py: error: pool worker-b (queue_b) lost all its consumers")
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    counts = tally(samples, fresh["run_dir"])
    print("pool killed during a load test:", counts)
    queued = queued_ids(app, "queue_b")
    assert all(s["state"] == "succeeded" for s in samples if s["task"] == "task_a")
    unknown = {s["task_id"] for s in samples if s["state"] == "unknown"}
    assert unknown and unknown <= queued  # every unknown task is still in its queue: nothing lost
    # at most the task worker-b was running when it stopped is queued again although it ran (its result
    # came back, its ack did not make it before the connection closed): it will run once more (at-least-once)
    assert len(queued - unknown) <= 1, queued - unknown
    assert counts["completed"] + counts["unknown"] == counts["sent"] == 60 and counts["duplicates"] == 0


@contextlib.contextmanager
def paused(broker):
    """The broker's node process stopped (SIGSTOP: TCP still accepts, nothing answers), continued after."""
    pid = int(broker.pidfile.read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_paused_broker_ends_the_dispatch_by_its_deadline_with_exit_3(fresh, fault_broker, tmp_path):
    """The node stops answering (SIGSTOP) once both 5 s tasks run: the dispatcher ends within 0.5 s of its
    --timeout 6 after its start-up checks, exit 3 with one line naming the broker, the partial report in
    its result file; once the node continues, the workers finish and nothing is lost."""
    out = tmp_path / "dispatch.json"
    proc = popen(fresh, "dispatch.py", "--timeout", "6", "--output", str(out))
    wait_for_line(proc.stdout, r"^Dispatching tasks")
    started = time.monotonic()  # the start-up checks are done: the --timeout clock runs from about here
    wait_for_line(proc.stdout, r" STARTED +task_[ab] ")
    wait_for_line(proc.stdout, r" STARTED +task_[ab] ")
    with paused(fault_broker):
        stdout, stderr = finish(proc, "the dispatch")
        elapsed = time.monotonic() - started
    print(f"paused broker: dispatch ended {elapsed:.2f}s after its start-up checks; stderr: {stderr.strip()}")
    ended_for_the_broker(proc, stdout, stderr, "dispatch.py", "broker stopped answering")
    assert elapsed <= 6.5
    doc = json.loads(out.read_text())  # the partial report, whole
    assert doc["exit_code"] == 3
    assert {t["task"]: t["state"] for t in doc["tasks"]} == {"task_a": "unknown", "task_b": "unknown"}
    runs = executions(fresh["run_dir"], [t["task_id"] for t in doc["tasks"]], settle=30)  # the node continued
    assert sorted(runs.values()) == [1, 1], runs  # each task ran to success once: nothing lost, no duplicate


def test_a_paused_broker_ends_the_load_test_by_its_deadline_with_exit_3(fresh, fault_broker, tmp_path):
    """The node stops answering while a load test's results come in: the run ends within 0.5 s of its
    --timeout 6 after the start-up checks, exit 3 naming the broker, every task in the result file
    (succeeded or unknown, none lost)."""
    out = tmp_path / "load.json"
    argv = ["load_test.py", "-v", "--tasks", "100", "--duration-a", "0.2", "--duration-b", "0.2"]
    proc = popen(fresh, *argv, "--timeout", "6", "--output", str(out))
    wait_for_line(proc.stderr, r"load: \d+ tasks; slots")  # logged once the start-up checks are done
    started = time.monotonic()
    wait_for_line(proc.stderr, r"^progress: ")  # results are coming in
    with paused(fault_broker):
        stdout, stderr = finish(proc, "the load test")
        elapsed = time.monotonic() - started
    print(f"paused broker: load test ended {elapsed:.2f}s after its start-up checks")
    ended_for_the_broker(proc, stdout, stderr, "load_test.py", "broker stopped answering")
    assert elapsed <= 6.5
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    counts = tally(samples, fresh["run_dir"])
    print("broker paused mid-load:", counts)
    assert counts["sent"] == 200 and counts["completed"] + counts["unknown"] == 200 and counts["lost"] == 0
    assert counts["unknown"] > 0  # the pause came while tasks were still queued


def test_status_watch_runs_through_a_broker_pause_and_a_restart(fresh, fault_broker):
    """`status --watch` shows the broker as unreachable while it is paused and while it restarts (a
    frame, not a traceback), shows the queues again each time it is back, and ends with 0 on Ctrl-C."""
    env = {"DTS_RUN_DIR": str(fresh["run_dir"])}
    proc = subprocess.Popen(
        [sys.executable, "scale.py", "status", "--watch", "--interval", "0.5", "--engine", "local"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONFAULTHANDLER="1", **fresh["env"], **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(proc.stdout, r"^engine: local .*\(ok\)")  # a frame with the broker answering
        with paused(fault_broker):
            wait_for_line(proc.stdout, r"^engine: local .*\(UNREACHABLE\)")  # the broker in trouble
        wait_for_line(proc.stdout, r"^engine: local .*\(ok\)")  # back by itself
        fault_broker.stop()
        wait_for_line(proc.stdout, r"^engine: local .*\(UNREACHABLE\)")
        fault_broker.start()
        wait_for_line(proc.stdout, r"^worker-a +queue_a +1 +1 +1 +1 ")  # the queues again: 1 worker, 1 consumer
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr


@pytest.fixture
def heartbeat_fleet(fault_broker, tmp_path):
    """1 worker-a + 1 worker-b with a 2 s heartbeat, on a vhost of their own on the fault broker."""
    from dts.config import load_settings
    from dts.testing import local_workers

    vhost = "heartbeat"
    fault_broker.ctl("add_vhost", vhost)
    fault_broker.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    path = write_config(tmp_path / "heartbeat.yml", replicas="1", timeout="60")
    path.write_text(path.read_text().replace("  connect_timeout: 5\n", "  connect_timeout: 5\n  heartbeat: 2\n"))
    url = fault_broker.url.rstrip("/") + "/" + vhost
    settings = load_settings(path).with_broker_url(url)
    assert settings.broker.heartbeat == 2
    app = app_for(settings)
    env = {"BROKER_URL": url, "DTS_CONFIG": str(path), "CI": "true"}
    try:
        with local_workers(settings, app, tmp_path / "run") as engine:
            yield {"engine": engine, "app": app, "env": env, "run_dir": tmp_path / "run"}
    finally:
        app.close()
        fault_broker.ctl("delete_vhost", vhost)


def wait_for_log(run_dir: Path, text: str, times: int, timeout: float) -> str:
    """The workers' logs once `text` stands in them `times` times; failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        logs = "".join(p.read_text(errors="replace") for p in run_dir.glob("*.log"))
        if logs.count(text) >= times:
            return logs
        assert time.monotonic() < deadline, f"the workers did not log {text!r} {times} times within {timeout:g}s"
        time.sleep(0.2)  # polling the log files for a condition, bounded by the deadline


def test_workers_notice_a_paused_broker_by_heartbeat_and_finish_the_burst_when_it_is_back(
    heartbeat_fleet, fault_broker, tmp_path
):
    """A pause mid-burst that lasts until both workers (2 s heartbeat) notice it: they drop the silent
    connection, reconnect when the node continues, and the burst completes; no task lost (at-least-once: a task whose
    ack was cut off runs again, counted)."""
    out = tmp_path / "load.json"
    argv = ["load_test.py", "--tasks", "40", "--duration-a", "0.1", "--duration-b", "0.1", "--timeout", "90"]
    proc = popen(heartbeat_fleet, *argv, "--output", str(out))
    wait_for_line(proc.stderr, r"^progress: ")  # results are coming in
    with paused(fault_broker):
        noticed = wait_for_log(heartbeat_fleet["run_dir"], "Too many heartbeats missed", times=2, timeout=30)  # both
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr[-3000:]
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    counts = tally(samples, heartbeat_fleet["run_dir"])
    print("broker paused under busy workers until they noticed (heartbeat 2 s):", counts)
    assert counts["sent"] == 80 and counts["completed"] == 80 and counts["lost"] == 0
    assert "Connection to broker lost" in noticed  # the workers noticed by heartbeat, during the pause


@contextlib.contextmanager
def memory_alarm(broker):
    """RabbitMQ's memory alarm raised (high watermark 0: every publishing connection is blocked), then
    cleared (the default watermark, 0.4)."""
    broker.ctl("set_vm_memory_high_watermark", "0")
    deadline = time.monotonic() + 30
    while "memory" not in broker.ctl("eval", "rabbit_alarm:get_alarms()."):
        assert time.monotonic() < deadline, "the memory alarm did not go off"
        time.sleep(0.2)  # polling the node for the alarm, bounded by the deadline
    try:
        yield
    finally:
        broker.ctl("set_vm_memory_high_watermark", "0.4")


def test_a_memory_alarm_is_reported_at_once_and_the_dispatch_ends_by_its_deadline(fresh, fault_broker, tmp_path):
    """Publishers blocked (connection.blocked) from the first task on: the dispatcher says so as it starts,
    ends by its --timeout 6 with exit 3 naming the alarm, both tasks reported unknown."""
    out = tmp_path / "dispatch.json"
    with memory_alarm(fault_broker):
        proc = popen(fresh, "dispatch.py", "--timeout", "6", "--output", str(out))
        wait_for_line(proc.stdout, r"^Dispatching tasks")
        started = time.monotonic()
        wait_for_line(proc.stderr, r"broker is blocking publishers")
        said = time.monotonic() - started
        stdout, stderr = finish(proc, "the dispatch")
        elapsed = time.monotonic() - started
    print(f"memory alarm: said 'blocked' after {said:.2f}s, dispatch ended after {elapsed:.2f}s")
    assert said < 1.0  # at once, not at the deadline
    ended_for_the_broker(proc, stdout, stderr, "dispatch.py", "blocking publishers")
    assert elapsed <= 6.5
    doc = json.loads(out.read_text())
    assert {t["task"]: t["state"] for t in doc["tasks"]} == {"task_a": "unknown", "task_b": "unknown"}


def test_a_memory_alarm_during_a_load_test_is_said_at_once_and_the_burst_completes_after(fresh, fault_broker, tmp_path):
    """The alarm goes off while a load test publishes (6,000 tasks, 2,000 in flight at most): the load test
    says "blocked" within a second, ends by its --timeout 8 with exit 3 naming the alarm and every task in
    its result file; once the alarm is cleared, the workers finish what reached the queues, each once."""
    from dts.amqp.checks import queue_stats

    out = tmp_path / "load.json"
    argv = ["load_test.py", "-v", "--tasks", "3000", "--duration-a", "0", "--duration-b", "0"]
    proc = popen(fresh, *argv, "--timeout", "8", "--output", str(out))
    wait_for_line(proc.stderr, r"load: \d+ tasks; slots")  # the start-up checks are done
    started = time.monotonic()
    wait_for_line(proc.stderr, r"^progress: ")  # results are coming in, publishing goes on
    with memory_alarm(fault_broker):
        alarm = time.monotonic()
        wait_for_line(proc.stderr, r"broker is blocking publishers")
        said = time.monotonic() - alarm
        stdout, stderr = finish(proc, "the load test")
        elapsed = time.monotonic() - started
    print(f"memory alarm mid-load: said 'blocked' {said:.2f}s after the alarm, ended {elapsed:.2f}s after start-up")
    assert said < 1.0  # at once, not at the deadline
    ended_for_the_broker(proc, stdout, stderr, "load_test.py", "blocking publishers")
    assert elapsed <= 8.5
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    deadline = time.monotonic() + 60  # the alarm is cleared: the workers take the rest of the burst
    while any(s.ready for s in queue_stats(fresh["app"], fresh["settings"].queues, Deadline.after(5)).values()):
        assert time.monotonic() < deadline, "the burst did not complete once the alarm was cleared"
        time.sleep(0.2)  # polling the queues for a condition, bounded by the deadline
    counts = tally(samples, fresh["run_dir"])
    print("memory alarm mid-load:", counts)
    assert counts["completed"] + counts["unknown"] == counts["sent"] == len(samples)  # every task sent accounted for
    assert counts["lost"] == 0 and counts["duplicates"] == 0 and counts["unknown"] > 0


def test_the_autoscaler_runs_through_a_broker_pause_and_looks_again_after(fresh, fault_broker):
    """`scale.py auto` against a paused broker: each look ends by its bound with a warning line (sizes
    stay), not a traceback or a hang; once the node continues, the looks read the queues again; exit 0."""
    env = {"DTS_RUN_DIR": str(fresh["run_dir"])}
    proc = subprocess.Popen(
        [sys.executable, "scale.py", "auto", "-vv", "--engine", "local", "--interval", "0.5", "--duration", "30"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONFAULTHANDLER="1", **{**fresh["env"], **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    look = r"worker-a: \d+ ready, \d+ consumer\(s\)"
    wait_for_line(proc.stderr, look)  # a look that read the queue
    with paused(fault_broker):
        began = time.monotonic()
        wait_for_line(proc.stderr, r"broker did not answer")
        noticed = time.monotonic() - began
    wait_for_line(proc.stderr, look)  # back: the next looks read the queue again
    proc.send_signal(signal.SIGINT)
    stdout, stderr = finish(proc, "the autoscaler")
    print(f"autoscaler: a paused broker noticed after {noticed:.2f}s")
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert noticed < 7  # one look's bound (broker.connect_timeout 5) plus the interval


@pytest.mark.parametrize(
    "argv",
    [
        ["scale.py", "health", "--engine", "local"],
        ["scale.py", "status", "--engine", "local"],
        ["-m", "dts", "dlq", "list"],
        ["-m", "dts", "dlq", "replay"],
    ],
    ids=["health", "status", "dlq-list", "dlq-replay"],
)
def test_a_paused_broker_is_exit_3_within_the_commands_bound(fresh, fault_broker, argv):
    """Against a node that accepts TCP and answers nothing, the one-shot commands end within their bound
    (broker.connect_timeout 5 s, the config's, plus start-up) with exit 3: one line (status and health:
    their report, saying UNREACHABLE), no traceback."""
    env = {"DTS_RUN_DIR": str(fresh["run_dir"])}
    with paused(fault_broker):
        began = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=dict(os.environ, PYTHONFAULTHANDLER="1", **fresh["env"], **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = finish(proc, " ".join(argv))
        elapsed = time.monotonic() - began
    print(f"paused broker: {' '.join(argv)} exit {proc.returncode} in {elapsed:.2f}s")
    assert proc.returncode == 3, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert elapsed < 8
    if argv[0] == "-m":
        assert stderr.strip().count("\n") == 0 and "dts dlq: error:" in stderr, stderr
    else:
        assert "UNREACHABLE" in stdout, stdout


def test_the_users_timeout_bounds_the_dispatch_after_its_start_up_checks(fresh, tmp_path):
    """Both 5 s tasks still running at `--timeout 3`: the dispatcher exits (1: unknown tasks) within 0.3 s
    of the deadline after its start-up checks, the live view's wait for trailing task events included."""
    out = tmp_path / "dispatch.json"
    proc = popen(fresh, "dispatch.py", "--timeout", "3", "--output", str(out))
    wait_for_line(proc.stdout, r"^Dispatching tasks")
    started = time.monotonic()
    stdout, stderr = finish(proc, "the dispatch")
    elapsed = time.monotonic() - started
    print(f"--timeout 3, tasks of 5 s: the dispatch ended {elapsed:.2f}s after its start-up checks")
    assert proc.returncode == 1, stdout + stderr
    assert {t["state"] for t in json.loads(out.read_text())["tasks"]} == {"unknown"}
    assert elapsed <= 3.3


def test_flower_shows_the_workers_offline_during_a_broker_pause_and_online_after(fresh, fault_broker, tmp_path):
    """Flower launched by `dts flower`: while the node is paused its web side keeps answering and
    the workers go offline (no heartbeat events); once the node continues they are online again."""
    import secrets

    from helpers import free_port, http_get

    port, login = free_port(), ("flower-fault", secrets.token_urlsafe(16))
    env = {"DTS_FLOWER_USER": login[0], "DTS_FLOWER_PASSWORD": login[1]}
    log = (tmp_path / "flower.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dts", "flower", "--port", str(port)],
        cwd=ROOT,
        env=dict(os.environ, **fresh["env"], **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    nodes = {n for names in fresh["engine"].workers().values() for n in names}

    def alive() -> set[str]:
        status, body = http_get(f"http://127.0.0.1:{port}/api/workers?status=true", login)
        assert status == 200, body
        return {n for n, up in json.loads(body).items() if up} & nodes

    def until(condition, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            assert proc.poll() is None, f"Flower exited: {(tmp_path / 'flower.log').read_text()[-2000:]}"
            with contextlib.suppress(OSError):
                if condition():
                    return
            assert time.monotonic() < deadline, f"{what} within {seconds}s"
            time.sleep(0.25)  # polling Flower's API for a condition, bounded by the deadline

    try:
        until(lambda: alive() == nodes, "Flower did not see the workers")
        with paused(fault_broker):
            until(lambda: not alive(), "Flower did not show the workers offline during the pause")
        until(lambda: alive() == nodes, "Flower did not show the workers online again after the pause")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert "Traceback" not in (tmp_path / "flower.log").read_text()
