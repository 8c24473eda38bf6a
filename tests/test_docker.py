"""End-to-end on a real Docker engine: build the worker image, run the compose services against the
host's RabbitMQ through a dedicated vhost/user, dispatch, scale worker-a to 3, stop a container during a
burst, tear down. Own compose project and vhost, so a user's containers and queues are untouched.

Where no registry is reachable the image is built on a local Debian base (tests/base_image.sh, cached).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest
from celery import Celery
from celery.result import ResultSet
from conftest import ROOT, write_config

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

E2E_VHOST = "dts-e2e"
E2E_USER = "dts-e2e"


def engine_problem() -> str | None:
    from pools import compose_command, engine_answers

    if not engine_answers():
        return "no Docker engine answers (`docker info` failed); install and start one (.ci/install-docker.sh)"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


@pytest.fixture(scope="module")
def stack(rabbitmq, tmp_path_factory):
    problem = engine_problem()
    if problem:
        print(f"\nSKIPPED container end-to-end test: {problem}")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {problem} (.ci/install-docker.sh should have started one)")
        pytest.skip(problem)
    from broker import ensure_vhost
    from pools import ComposePool

    from celery_app import celery_settings, load_config

    password = secrets.token_hex(12)
    ensure_vhost(E2E_VHOST, E2E_USER, password)
    cfg_path = write_config(tmp_path_factory.mktemp("e2e") / "e2e.yml", replicas="1")
    cfg_path.chmod(0o644)  # read by the container's unprivileged user through the bind mount
    project = f"dts-e2e-{os.getpid()}"
    env = dict(
        os.environ,
        BROKER_URL=f"amqp://{E2E_USER}:{password}@localhost:5672/{E2E_VHOST}",
        DTS_CONFIG=str(cfg_path),
        DTS_CONFIG_FILE=str(cfg_path),
        COMPOSE_PROJECT_NAME=project,
        DTS_IMAGE="dts-worker:e2e",
        DTS_BROKER_USER=E2E_USER,
        DTS_BROKER_PASSWORD=password,
        DTS_BROKER_VHOST=E2E_VHOST,
        PY=sys.executable,
    )
    build = subprocess.run(
        ["sh", "scripts/build-image.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout + build.stderr

    config = load_config(cfg_path)
    config = type(config)(**{**config.__dict__, "broker_url": env["BROKER_URL"]})
    e2e_app = Celery("celery_app")
    e2e_app.conf.update(celery_settings(config))
    compose_env = {
        k: env[k]
        for k in ("DTS_CONFIG_FILE", "DTS_IMAGE", "DTS_BROKER_USER", "DTS_BROKER_PASSWORD", "DTS_BROKER_VHOST")
    }
    pool = ComposePool(config, project=project, env=compose_env, app=e2e_app)
    try:
        up = subprocess.run([sys.executable, "scale.py", "up", "--mode", "docker"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "pool": pool, "app": e2e_app, "config": config}
    finally:
        logs = subprocess.run([*pool.cmd, "logs", "--tail", "30"], env=pool.env, capture_output=True, text=True)
        print(logs.stdout[-4000:])
        pool.down()
        e2e_app.close()


def container_logs(project: str) -> list[str]:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    procs = [subprocess.run(["docker", "logs", cid], capture_output=True, text=True) for cid in ids]
    return [p.stdout + p.stderr for p in procs]  # celery logs to stderr


def cli(stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=stack["env"], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_dispatch_against_containers(stack):
    workers = stack["pool"].workers()
    assert len(workers["worker-a"]) == 1 and len(workers["worker-b"]) == 1, workers
    proc = cli(stack, "dispatch.py", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert results["task_a"]["message"] == "Hello from Task A"
    assert results["task_b"]["message"] == "Hello from Task B"
    # the node names carry the container hostnames of the right service
    assert results["task_a"]["worker"] in workers["worker-a"]
    assert results["task_b"]["worker"] in workers["worker-b"]


def test_healthcheck_command_pings_the_containers_own_worker(stack):
    import re

    cmd = re.search(r"^\s+CMD (celery .*)$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    for cid in stack["pool"].containers("worker-a") + stack["pool"].containers("worker-b"):
        proc = subprocess.run(["docker", "exec", cid, "sh", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scale_worker_a_to_3_and_all_share_a_burst(stack):
    from broker import queue_stats

    proc = cli(stack, "scale.py", "worker-a", "3", "--mode", "docker")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = stack["pool"].workers()["worker-a"]
    assert len(set(names)) == 3, names
    assert queue_stats(stack["app"], ["queue_a"])["queue_a"].consumers == 3

    app = stack["app"]
    results = ResultSet([app.send_task("celery_app.task_a", kwargs={"duration": 0.2}) for _ in range(30)])
    values = results.get(timeout=120)
    assert len(values) == 30
    assert {v["worker"] for v in values} == set(names)  # every replica got a share


def test_sigterm_to_a_container_during_a_burst_loses_nothing(stack):
    app = stack["app"]
    pool = stack["pool"]
    assert len(pool.containers("worker-a")) == 3
    sent = [app.send_task("celery_app.task_a", kwargs={"duration": 0.3}) for _ in range(24)]
    sent[0].get(timeout=60)  # the burst is being worked on by all replicas
    victim = pool.containers("worker-a")[0]
    stop = subprocess.run(["docker", "stop", "-t", "60", victim], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    values = ResultSet(sent).get(timeout=120)
    assert sorted(v["task_id"] for v in values) == sorted(r.id for r in sent)  # all 24 came back
    logs = "".join(container_logs(stack["pool"].project))  # the stopped container's too
    assert all(len(re.findall(rf"\[{r.id}\] succeeded in", logs)) == 1 for r in sent)  # each ran exactly once
    assert all(v["message"] == "Hello from Task A" for v in values)
    assert len(pool.containers("worker-a")) == 2
    exit_code = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.ExitCode}}", victim], capture_output=True, text=True
    )
    assert exit_code.stdout.strip() == "0"  # celery (PID 1) got SIGTERM and shut down warm
