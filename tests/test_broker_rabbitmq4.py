"""RabbitMQ 4.0 and 4.3 as the compose `broker` service (`dts up --broker compose --rabbitmq LINE`), end to
end on a real Docker engine: each line's image (Debian 13's and unstable's rabbitmq-server on a local base of
that suite, cached by tag) with the deprecated features it denies, the pools as containers on quorum queues,
a dispatch with the challenge's lines, a small load test with every task accounted for, a message
redelivered past the delivery limit dead-lettered, not dropped, status and health, a worker's process killed
mid-burst and the broker restarted mid-burst with nothing lost. Own compose project, vhost and port per line;
the lines, and the exact version each must report, are docs/samples/tested-versions.json's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers import (
    ROOT,
    check_rabbitmq_version,
    compose_broker_stack,
    finish,
    parametrize_by_line,
    popen_cli,
    run_cli,
    wait_for_line,
    write_config,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]
LIMIT = 2  # the quorum queues' delivery limit here (the project's default is 5; RabbitMQ 4.x's own is 20)


def pytest_generate_tests(metafunc):
    parametrize_by_line(metafunc, "stack")  # the lines docs/samples/tested-versions.json names: 4.0, 4.3


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("rmq4") / "rmq4.yml", replicas="1")
    text = path.read_text().replace(
        "  connect_timeout: 5\n", f"  connect_timeout: 5\n  queue_type: quorum\n  delivery_limit: {LIMIT}\n"
    )
    path.write_text(text)
    with compose_broker_stack(path, "rmq" + request.param.replace(".", ""), rabbitmq=request.param) as found:
        yield {**found, "line": request.param, "config": path}


def rabbitmqctl(stack: dict, *args: str) -> str:
    """`rabbitmqctl -q ARGS` inside the stack's broker container."""
    cid = stack["engine"].containers("broker")
    assert len(cid) == 1, cid
    argv = ["docker", "exec", cid[0], "rabbitmqctl", "-q", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_broker_runs_that_line_and_refuses_a_transient_non_exclusive_queue(stack):
    """rabbitmq-4.conf denies the withdrawn features: a queue neither durable nor exclusive is refused (as 4.x
    will by default), so a Celery or project queue of that kind would fail here; nothing used either."""
    from amqp.exceptions import AMQPError
    from kombu import Connection

    check_rabbitmq_version(stack["line"], rabbitmqctl(stack, "version"))  # e.g. 4.3.6, as the docs' table says
    with Connection(stack["env"]["BROKER_URL"]) as conn, pytest.raises(AMQPError, match="transient_nonexcl_queues"):
        conn.default_channel.queue_declare("dts-transient-probe", durable=False, exclusive=False, auto_delete=True)
    assert json.loads(rabbitmqctl(stack, "list_deprecated_features", "--used", "--formatter", "json")) == []


def test_dispatch_prints_the_challenge_lines(stack):
    proc = run_cli("dispatch.py", env=stack["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Result from task_a: Hello from Task A" in proc.stdout
    assert "Result from task_b: Hello from Task B" in proc.stdout
    assert "Isolation: OK" in proc.stdout


def test_a_load_test_accounts_for_every_task(stack, tmp_path):
    out = tmp_path / "load.json"
    proc = run_cli(
        "load_test.py",
        "--tasks",
        "10",
        "--duration-a",
        "0",
        "--duration-b",
        "0",
        "--output",
        str(out),
        env=stack["env"],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    assert len({s["task_id"] for s in samples}) == 20
    assert {s["state"] for s in samples} == {"succeeded"}, [s for s in samples if s["state"] != "succeeded"]


def test_a_poison_message_on_a_quorum_queue_reaches_its_dead_queue(stack, tmp_path):
    """A queue of its own, declared as the project declares its queues (quorum, delivery limit, dead-letter
    pair) with no worker on it: the test rejects a message each time, as a task killing its worker would."""
    from kombu import Connection, Producer

    from dts.app.conf import declared_queues
    from dts.config import load_settings

    path = tmp_path / "poison.yml"  # the stack's config (quorum, LIMIT) with queue_a renamed
    path.write_text(stack["config"].read_text().replace("queue_a", "poison_q"))
    url = stack["env"]["BROKER_URL"]
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.default_channel
        for queue in declared_queues(load_settings(path)):
            queue.bind(channel).declare()
        Producer(channel).publish(
            {"poison": 1}, exchange="poison_q", routing_key="poison_q", headers={"id": "poison-1"}
        )
        deliveries, deadline = 0, time.monotonic() + 15
        while deliveries < LIMIT + 1 and time.monotonic() < deadline:
            message = channel.basic_get("poison_q", no_ack=False)
            if message is None:  # a requeue reaches a quorum queue a moment later
                time.sleep(0.05)  # polling the queue, under the deadline
                continue
            deliveries += 1
            channel.basic_reject(message.delivery_tag, requeue=True)
    assert deliveries == LIMIT + 1
    letters, deadline = [], time.monotonic() + 15
    while not letters and time.monotonic() < deadline:  # dead-lettering follows the last reject
        proc = run_cli("-m", "dts", "dlq", "list", "--json", "--config", str(path), env={"BROKER_URL": url})
        assert proc.returncode == 0, proc.stderr
        letters = json.loads(proc.stdout)["queues"]["poison_q"]["messages"]
    assert [m["reason"].split()[0] for m in letters] == ["delivery_limit"], letters


def test_status_and_health_see_the_pools_on_that_line(stack):
    for command in ("status", "health"):
        proc = run_cli("scale.py", command, "--engine", "compose", "--json", env=stack["env"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["broker_ok"] and {p["pool"]: p["alive"] for p in report["pools"]} == {
            "worker-a": 1,
            "worker-b": 1,
        }


def test_a_worker_killed_mid_burst_loses_no_task(stack, tmp_path):
    """SIGKILL of worker-a's container main process (a crash, an OOM kill) while it runs a task of a load: its
    restart policy brings it back (a kill from outside is not `docker kill`, which counts as a manual stop),
    the quorum queue delivers the unacknowledged task again (late acks) and the load test, waiting for the
    pool to come back, gets every result: each task ran to success exactly once, the killed one after the
    restart."""
    from datetime import datetime

    engine, app = stack["engine"], stack["app"]
    (cid,) = engine.containers("worker-a")
    (node,) = engine.workers()["worker-a"]
    restarts, pid = (int(v) for v in docker_inspect(cid, "{{.RestartCount}} {{.State.Pid}}").split())
    out = tmp_path / "load.json"
    argv = ["load_test.py", "--tasks", "12", "--duration-a", "1", "--duration-b", "0.01", "--output", str(out)]
    load = popen_cli(stack["env"], *argv, "--timeout", "120")
    try:
        wait_for_line(load.stderr, r"^progress: ")  # the load is out: the worker is on its first tasks
        victim = running_with_time_left(app, node, seconds=0.5, deadline=time.monotonic() + 30)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)  # the container's PID 1 (celery): the kernel ends every process in it
        stdout, stderr = finish(load, "load_test.py with its worker killed", timeout=180)
    finally:
        load.kill()
    assert load.returncode == 0, stdout + stderr[-3000:]
    assert int(docker_inspect(cid, "{{.RestartCount}}")) == restarts + 1  # the restart policy brought it back
    samples = {s["task_id"]: s for s in json.loads(out.read_text())["runs"][0]["samples"]}
    assert len(samples) == 24 and {s["state"] for s in samples.values()} == {"succeeded"}, samples
    again = samples[victim]  # delivered again, run from the start in the restarted container
    assert again["worker"] == node and datetime.fromisoformat(again["started_at"]).timestamp() > killed_at, again
    logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, timeout=60)
    text = logs.stdout + logs.stderr  # both lives of the container
    ran = {
        tid: len(re.findall(rf"\[{tid}\] succeeded in", text)) for tid, s in samples.items() if s["task"] == "task_a"
    }
    assert set(ran.values()) == {1}, ran  # nothing lost, nothing run twice


def docker_inspect(cid: str, template: str) -> str:
    proc = subprocess.run(["docker", "inspect", "-f", template, cid], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def running_with_time_left(app, node: str, seconds: float, deadline: float) -> str:
    """The id of a task `node` is running that has more than `seconds` of its 1 s left (from the worker's own
    `active` report), so a kill now comes before it could finish or be acknowledged."""
    while time.monotonic() < deadline:
        for task in (app.control.inspect([node], timeout=1.0).active() or {}).get(node, []):
            if task.get("time_start") and time.time() - task["time_start"] < 1 - seconds:
                return task["id"]
    raise AssertionError(f"{node} ran no task of the load within 30 s")


def test_a_broker_restart_mid_burst_loses_no_task(stack, tmp_path):
    """The broker container restarted while a load runs (120 tasks of 0.2 s on 1 + 1 workers: about 12 s of
    work): every task accounted for, each succeeded (quorum queues and persistent results keep them; the load
    test and the workers reconnect), and the load test did see the broker go."""
    import sys

    out = tmp_path / "load.json"
    argv = [sys.executable, "load_test.py", "--tasks", "60", "--duration-a", "0.2", "--duration-b", "0.2"]
    load = subprocess.Popen([*argv, "--output", str(out)], cwd=ROOT, env={**os.environ, **stack["env"]},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_the_burst(stack["env"]["BROKER_URL"], deadline=time.monotonic() + 60)
        (cid,) = stack["engine"].containers("broker")
        subprocess.run(["docker", "restart", "-t", "10", cid], check=True, capture_output=True, timeout=120)
        stdout, stderr = load.communicate(timeout=300)
    finally:
        load.kill()
    assert load.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert "broker connection lost" in stderr, stderr[-2000:]  # the restart came mid-burst
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    assert len({s["task_id"] for s in samples}) == 120
    assert {s["state"] for s in samples} == {"succeeded"}, [s for s in samples if s["state"] != "succeeded"]


def wait_for_the_burst(url: str, deadline: float) -> None:
    """Until queue_a holds messages (the load test is sending), by passive declares under the deadline."""
    from kombu import Connection

    with Connection(url) as conn:
        while time.monotonic() < deadline:
            try:
                if conn.default_channel.queue_declare("queue_a", passive=True).message_count:
                    return
            except Exception:  # noqa: BLE001 - not declared yet: the load test declares it as it starts
                conn.close()  # a failed passive declare closes the channel: open another
            time.sleep(0.05)  # polling the queue, under the deadline
    raise AssertionError("the load test sent nothing within 60 s")
