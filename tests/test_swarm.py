"""End-to-end on a real single-node Docker Swarm: deploy the stack rendered from a temporary config (queues
renamed, so the services must follow the config) into a fresh vhost with its own user, whose URL reaches
the workers only as a swarm secret; dispatch; scale worker-a to 3 and see all 3 share a burst; remove the
stack and check nothing of it is left. When the engine was in no swarm, the test makes one (through
`scale.py up --init-swarm`, as `make deploy ENGINE=swarm` does) and leaves it again at the end, removing
the docker_gwbridge network that `swarm init` creates and `swarm leave` keeps.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from helpers import (
    CHECKOUT,
    app_for,
    build_images,
    compose_problem,
    current_image,
    fresh_vhost,
    need_engine,
    run_cli,
    vhost_url,
    write_config,
)

from dts.amqp.deadline import Deadline

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.timeout(600)]

VHOST = USER = f"dts-swarm-{CHECKOUT}"
QUEUES = {"worker-a": "swarmed_a", "worker-b": "swarmed_b"}
LABEL = "label=com.docker.stack.namespace="


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def stack_leftovers(stack: str) -> dict[str, list[str]]:
    """What docker still lists with the stack's label, by kind."""
    kinds = {
        "service": ["service", "ls"],
        "container": ["ps", "-a"],
        "network": ["network", "ls"],
        "secret": ["secret", "ls"],
        "config": ["config", "ls"],
    }
    return {kind: docker(*argv, "-q", "--filter", LABEL + stack).stdout.split() for kind, argv in kinds.items()}


def swarm_problem() -> str | None:
    from dts.engines.swarm import swarm_state

    problem = compose_problem()
    if problem is None and swarm_state() not in ("inactive", "active"):
        problem = f"the engine's swarm is in state {swarm_state()}"
    return problem


@pytest.fixture(scope="module")
def swarm(rabbitmq, tmp_path_factory):
    need_engine(swarm_problem())
    from dts.config import load_settings
    from dts.engines.swarm import SwarmEngine, swarm_state

    created = swarm_state() == "inactive"  # only a swarm this test made is left again
    password = secrets.token_hex(12)
    fresh_vhost(VHOST, USER, password)
    cfg_path = write_config(
        tmp_path_factory.mktemp("swarm") / "swarm.yml",
        replicas="1",
        queue_a=QUEUES["worker-a"],
        queue_b=QUEUES["worker-b"],
    )
    # a check every 2 s: a new task counts as running after its first health check (`service scale` waits)
    cfg_path.write_text(
        cfg_path.read_text().replace("  start_timeout: 60\n", "  start_timeout: 90\n  health_interval: 2\n")
    )
    assert "health_interval: 2" in cfg_path.read_text()
    stack = f"dts-swarm-{os.getpid()}"
    credentials = {"DTS_BROKER_USER": USER, "DTS_BROKER_PASSWORD": password, "DTS_BROKER_VHOST": VHOST}
    env = {
        "BROKER_URL": vhost_url(VHOST, USER, password),
        "DTS_CONFIG": str(cfg_path),
        "DTS_STACK": stack,
        "DTS_IMAGE": current_image(),
        "PY": sys.executable,
        **credentials,
    }
    build_images(env, "scripts/build-image.sh")

    settings = load_settings(cfg_path).with_broker_url(env["BROKER_URL"])
    app = app_for(settings)
    engine = SwarmEngine(settings, app, stack=stack, env={"DTS_IMAGE": env["DTS_IMAGE"], **credentials})
    try:
        up = run_cli("scale.py", "up", "--engine", "swarm", "--init-swarm", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert swarm_state() == "active"
        assert ("single-node swarm" in up.stderr) == created, up.stderr
        yield {"env": env, "engine": engine, "app": app, "stack": stack}
    finally:
        print(docker("service", "logs", "--tail", "20", f"{stack}_worker-a").stdout[-3000:])
        try:
            engine.stop()
        finally:
            app.close()
            leave_swarm(created)


def leave_swarm(created: bool) -> None:
    """Leave the swarm and remove the docker_gwbridge network `swarm init` made, when this test made it."""
    from dts.engines.swarm import swarm_state

    if created:
        docker("swarm", "leave", "--force")
        docker("network", "rm", "docker_gwbridge")
        assert swarm_state() == "inactive"
        assert "docker_gwbridge" not in docker("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_each_pool_consumes_its_renamed_queue(swarm):
    from dts.amqp.checks import queue_stats

    nodes = swarm["engine"].workers()
    assert {pool: len(n) for pool, n in nodes.items()} == {"worker-a": 1, "worker-b": 1}, nodes
    stats = queue_stats(swarm["app"], list(QUEUES.values()), Deadline.after(5))
    assert {q: stats[q].consumers for q in QUEUES.values()} == {q: 1 for q in QUEUES.values()}
    active = swarm["app"].control.inspect(destination=[n for ns in nodes.values() for n in ns], timeout=5)
    assert {w: [q["name"] for q in qs] for w, qs in active.active_queues().items()} == {
        nodes["worker-a"][0]: [QUEUES["worker-a"]],
        nodes["worker-b"][0]: [QUEUES["worker-b"]],
    }


def test_the_broker_url_is_in_neither_the_stack_file_nor_the_service_spec(swarm):
    password = swarm["env"]["DTS_BROKER_PASSWORD"]
    assert password not in swarm["engine"].stack_file.read_text()
    spec = docker("service", "inspect", f"{swarm['stack']}_worker-a").stdout
    assert spec and password not in spec and "/run/secrets/dts_broker_url" in spec


def test_dispatch_gets_both_results_from_swarm_workers(swarm):
    nodes = swarm["engine"].workers()
    proc = run_cli("dispatch.py", "--json", env=swarm["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert (results["task_a"]["queue"], results["task_b"]["queue"]) == (QUEUES["worker-a"], QUEUES["worker-b"])
    assert results["task_a"]["worker"] in nodes["worker-a"]  # pool@<container hostname> of a swarm task
    assert results["task_b"]["worker"] in nodes["worker-b"]


def test_scale_worker_a_to_3_and_all_share_a_burst(swarm):
    from celery.result import ResultSet

    from dts.amqp.checks import queue_stats

    proc = run_cli("scale.py", "set", "worker-a", "3", "--engine", "swarm", env=swarm["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = swarm["engine"].workers()["worker-a"]
    assert len(set(names)) == 3, names
    assert queue_stats(swarm["app"], [QUEUES["worker-a"]], Deadline.after(5))[QUEUES["worker-a"]].consumers == 3
    status = run_cli("scale.py", "status", "--engine", "swarm", env=swarm["env"])
    assert f"{swarm['stack']}_worker-a 3/3" in status.stdout, status.stdout + status.stderr

    app = swarm["app"]
    values = ResultSet([app.send_task("celery_app.task_a", kwargs={"duration": 0.2}) for _ in range(30)]).get(
        timeout=120
    )
    assert len(values) == 30
    assert {v["worker"] for v in values} == set(names)  # every replica got a share


def test_down_removes_every_service_container_network_and_secret(swarm):
    proc = run_cli("scale.py", "down", "--engine", "swarm", env=swarm["env"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "swarm: stopped 4 worker(s)" in proc.stdout
    assert stack_leftovers(swarm["stack"]) == {k: [] for k in ("service", "container", "network", "secret", "config")}
