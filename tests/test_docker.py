"""End-to-end on a real Docker engine: build the worker image, run one compose service per pool (rendered
from a temporary config whose queues are renamed) against the host's RabbitMQ through a dedicated
vhost/user, dispatch, scale worker-a to 3, stop a container during a burst, tear down. Own compose project
and vhost, so a user's containers and queues are untouched.

Where no registry is reachable the image is built on a local Debian base (docker/base_image.sh, cached).
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
from celery.result import ResultSet
from helpers import (
    CHECKOUT,
    app_for,
    build_images,
    check_compose_version,
    compose_problem,
    current_image,
    free_port,
    fresh_vhost,
    http_get,
    json_lines,
    need_engine,
    run_cli,
    vhost_url,
    write_config,
)

from dts.amqp.deadline import Deadline

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

E2E_VHOST = f"dts-e2e-{CHECKOUT}"
E2E_USER = f"dts-e2e-{CHECKOUT}"
QUEUES = {"worker-a": "boxed_a", "worker-b": "boxed_b"}  # renamed: the containers must follow the config


@pytest.fixture(scope="module")
def stack(rabbitmq, tmp_path_factory):
    need_engine(compose_problem())
    check_compose_version()  # the Compose the docs' table of tested versions names
    from dts.config import load_settings
    from dts.engines.compose import ComposeEngine

    password = secrets.token_hex(12)
    fresh_vhost(E2E_VHOST, E2E_USER, password)
    cfg_path = write_config(
        tmp_path_factory.mktemp("e2e") / "e2e.yml", replicas="1", queue_a=QUEUES["worker-a"], queue_b=QUEUES["worker-b"]
    )
    cfg_path.chmod(0o644)  # read by the container's unprivileged user through the bind mount
    cfg_path.parent.chmod(0o755)
    project = f"dts-e2e-{os.getpid()}"
    credentials = {"DTS_BROKER_USER": E2E_USER, "DTS_BROKER_PASSWORD": password, "DTS_BROKER_VHOST": E2E_VHOST}
    env = {
        "BROKER_URL": vhost_url(E2E_VHOST, E2E_USER, password),
        "DTS_CONFIG": str(cfg_path),
        "COMPOSE_PROJECT_NAME": project,
        "DTS_IMAGE": current_image(),
        "PY": sys.executable,
        **credentials,
    }
    build_images(env, "scripts/build-image.sh")

    settings = load_settings(cfg_path).with_broker_url(env["BROKER_URL"])
    app = app_for(settings)
    engine = ComposeEngine(settings, app, project=project, env={"DTS_IMAGE": env["DTS_IMAGE"], **credentials})
    try:
        up = run_cli("scale.py", "up", "--engine", "compose", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "engine": engine, "app": app}
    finally:
        logs = subprocess.run([*engine.cmd, "logs", "--tail", "30"], env=engine.env, capture_output=True, text=True)
        print(logs.stdout[-4000:])
        engine.stop()
        app.close()


def container_logs(project: str) -> str:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    procs = [subprocess.run(["docker", "logs", cid], capture_output=True, text=True) for cid in ids]
    return "".join(p.stdout + p.stderr for p in procs)  # celery logs to stderr


def test_containers_consume_the_renamed_queues(stack):
    nodes = stack["engine"].workers()
    assert {pool: len(n) for pool, n in nodes.items()} == {"worker-a": 1, "worker-b": 1}, nodes
    active = (
        stack["app"].control.inspect(destination=[n for ns in nodes.values() for n in ns], timeout=5).active_queues()
    )
    assert {w: [q["name"] for q in qs] for w, qs in active.items()} == {
        nodes["worker-a"][0]: [QUEUES["worker-a"]],
        nodes["worker-b"][0]: [QUEUES["worker-b"]],
    }


def test_dispatch_against_containers(stack):
    nodes = stack["engine"].workers()
    proc = run_cli("dispatch.py", "--json", env=stack["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert results["task_a"]["message"] == "Hello from Task A"
    assert results["task_b"]["message"] == "Hello from Task B"
    assert (results["task_a"]["queue"], results["task_b"]["queue"]) == (QUEUES["worker-a"], QUEUES["worker-b"])
    # the node names carry the container hostnames of the right pool's service
    assert results["task_a"]["worker"] in nodes["worker-a"]
    assert results["task_b"]["worker"] in nodes["worker-b"]


def test_container_logs_are_json_lines_with_the_task_fields(stack):
    """LOG_FORMAT=json is the containers' default: every line a worker container writes is a JSON object,
    and the task lifecycle records name the task, its queue, worker, attempt, duration and outcome."""
    app, engine = stack["app"], stack["engine"]
    image_env = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config.Env}}", stack["env"]["DTS_IMAGE"]],
        capture_output=True,
        text=True,
    ).stdout
    assert "LOG_FORMAT=json" in json.loads(image_env)
    sent = {"a": app.send_task("celery_app.task_a", kwargs={"fail_times": 1}), "b": app.send_task("celery_app.task_b")}
    results = {k: r.get(timeout=60) for k, r in sent.items()}
    deadline = time.monotonic() + 60  # the final record follows the result: poll the logs until it is there
    while True:
        records = json_lines(container_logs(engine.project))
        done = {r.get("task_id") for r in records if r["event"] == "task succeeded"}
        if {r.id for r in sent.values()} <= done or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling the logs for a condition, not synchronising on time
    for key, pool in (("a", "worker-a"), ("b", "worker-b")):
        mine = [r for r in records if r["logger"] == "dts.task" and r.get("task_id") == sent[key].id]
        assert mine and mine[-1]["event"] == "task succeeded", mine
        assert mine[-1]["attempt"] == results[key]["retries"] + 1 and mine[-1]["outcome"] == "success"
        assert mine[-1]["duration"] > 0
        for r in mine:
            assert (r["task_name"], r["queue"]) == (f"celery_app.task_{key}", QUEUES[pool]), r
            assert r["worker"] == results[key]["worker"] and r["worker"] in engine.workers()[pool], r
    assert [r["event"] for r in records if r.get("task_id") == sent["a"].id and r["logger"] == "dts.task"] == [
        "task started",
        "task retry",
        "task started",
        "task succeeded",
    ]


def test_flower_in_the_monitoring_profile_sees_the_worker_containers(stack):
    """The `monitoring` profile's Flower runs from the project image beside the workers, on loopback,
    behind its login, and lists both pools' containers."""
    from dts.engines.compose import ComposeEngine
    from dts.flower_auth import PROFILE, SERVICE, healthy

    engine, port, login = stack["engine"], free_port(), ("e2e", secrets.token_urlsafe(16))
    flower = ComposeEngine(
        engine.settings,
        stack["app"],
        project=engine.project,
        env={
            **engine.env,
            "COMPOSE_PROFILES": PROFILE,
            "DTS_FLOWER_PORT": str(port),
            "DTS_FLOWER_USER": login[0],
            "DTS_FLOWER_PASSWORD": login[1],
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        flower.compose("up", "-d", "--no-deps", SERVICE, timeout=300)
        assert healthy(url, time.monotonic() + 60), flower.compose("logs", "--tail", "30", SERVICE).stdout
        assert http_get(f"{url}/api/workers")[0] == 401
        status, body = http_get(f"{url}/api/workers?refresh=true", login)
        assert status == 200, body
        nodes = engine.workers()
        assert set(nodes["worker-a"] + nodes["worker-b"]) <= set(json.loads(body)), body[:500]
    finally:
        flower.compose("rm", "-fs", SERVICE)


def test_healthcheck_pings_the_containers_own_worker(stack):
    engine = stack["engine"]
    ids = engine.containers("worker-a") + engine.containers("worker-b")
    assert len(ids) == 2
    for cid in ids:
        proc = subprocess.run(
            ["docker", "exec", cid, "python", "-m", "dts", "worker", "--ping"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = subprocess.run(
        ["docker", "exec", "-e", "DTS_POOL=worker-b", ids[0], "python", "-m", "dts", "worker", "--ping"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1  # a worker-a container is not a healthy worker-b


def test_scale_worker_a_to_3_and_all_share_a_burst(stack):
    from dts.amqp.checks import queue_stats

    proc = run_cli("scale.py", "set", "worker-a", "3", "--engine", "compose", env=stack["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = stack["engine"].workers()["worker-a"]
    assert len(set(names)) == 3, names
    assert queue_stats(stack["app"], [QUEUES["worker-a"]], Deadline.after(5))[QUEUES["worker-a"]].consumers == 3

    app = stack["app"]
    results = ResultSet([app.send_task("celery_app.task_a", kwargs={"duration": 0.2}) for _ in range(30)])
    values = results.get(timeout=120)
    assert len(values) == 30
    assert {v["worker"] for v in values} == set(names)  # every replica got a share


def test_sigterm_to_a_container_during_a_burst_loses_nothing(stack):
    app, engine = stack["app"], stack["engine"]
    assert len(engine.containers("worker-a")) == 3
    sent = [app.send_task("celery_app.task_a", kwargs={"duration": 0.3}) for _ in range(24)]
    sent[0].get(timeout=60)  # the burst is being worked on by all replicas
    victim = engine.containers("worker-a")[0]
    stop = subprocess.run(["docker", "stop", "-t", "60", victim], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    values = ResultSet(sent).get(timeout=120)
    assert sorted(v["task_id"] for v in values) == sorted(r.id for r in sent)  # all 24 came back
    logs = container_logs(engine.project)  # the stopped container's too
    assert all(len(re.findall(rf"\[{r.id}\] succeeded in", logs)) == 1 for r in sent)  # each ran exactly once
    assert len(engine.containers("worker-a")) == 2
    exit_code = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.ExitCode}}", victim], capture_output=True, text=True
    )
    assert exit_code.stdout.strip() == "0"  # celery (PID 1) got SIGTERM and shut down warm


DEVICES_VHOST = f"dts-devices-{CHECKOUT}"
SEES_BOARD = "test -c /dev/board && echo probe > /dev/board && grep -qx hello /images/hello.txt && id -G"


def test_a_pools_device_and_volume_reach_its_worker_process(rabbitmq, tmp_path):
    """pools.<name>.devices and volumes on the compose engine: a command task the worker runs opens the
    device (a character device, written to) and reads the file of the mounted folder (a relative host path,
    read-only), as the image's non-root user with the device's group added."""
    need_engine(compose_problem())
    from dts.config import load_settings
    from dts.engines.compose import ComposeEngine

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "hello.txt").write_text("hello\n")
    for path, mode in ((tmp_path, 0o755), (tmp_path / "images", 0o755), (tmp_path / "images" / "hello.txt", 0o644)):
        path.chmod(mode)
    config = tmp_path / "devices.yml"
    config.write_text(
        "pools:\n"
        "  worker-dev: {queues: [dev_a, dev_b], devices: [/dev/null:/dev/board:rw], volumes: [images:/images:ro]}\n"
        "tasks:\n  task_a: {queue: dev_a}\n  task_b: {queue: dev_b}\n"
        f"  sees_board: {{queue: dev_a, command: [sh, -c, {SEES_BOARD!r}]}}\n"
        "engine: {name: compose, stop_timeout: 10, start_timeout: 90}\n"
    )
    config.chmod(0o644)
    password = secrets.token_hex(12)
    fresh_vhost(DEVICES_VHOST, DEVICES_VHOST, password)
    credentials = {"DTS_BROKER_USER": DEVICES_VHOST, "DTS_BROKER_PASSWORD": password, "DTS_BROKER_VHOST": DEVICES_VHOST}
    env = {
        "BROKER_URL": vhost_url(DEVICES_VHOST, DEVICES_VHOST, password),
        "DTS_CONFIG": str(config),
        "COMPOSE_PROJECT_NAME": f"dts-devices-{os.getpid()}",
        "DTS_IMAGE": current_image(),
        "PY": sys.executable,
        **credentials,
    }
    build_images(env, "scripts/build-image.sh")
    settings = load_settings(config).with_broker_url(env["BROKER_URL"])
    app = app_for(settings)
    engine = ComposeEngine(
        settings, app, project=env["COMPOSE_PROJECT_NAME"], env={"DTS_IMAGE": env["DTS_IMAGE"], **credentials}
    )
    try:
        up = run_cli("scale.py", "up", "--engine", "compose", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        proc = run_cli("dispatch.py", "--task", "sees_board", "--no-save", "--json", env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (task,) = json.loads(proc.stdout)["tasks"]
        assert task["result"]["worker"] in engine.workers()["worker-dev"]
        assert "0" in task["result"]["value"]["stdout"].split()  # /dev/null's group (root) was added
    finally:
        engine.stop()
        app.close()
