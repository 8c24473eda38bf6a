"""RabbitMQ as the compose `broker` service (`make up BROKER=compose`), end to end on a real Docker engine:
the broker image (Debian's rabbitmq-server on the local base, cached by tag), the workers rendered against
it, a dispatch from the host through its published port, then everything removed (containers, network and
the test's data volume). Own compose project, vhost, user and a free host port, so neither a user's
containers nor the host's RabbitMQ on 5672 are touched.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import broker_answers, compose_broker_stack, run_cli, write_config

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def broker_stack(tmp_path_factory):
    cfg_path = write_config(tmp_path_factory.mktemp("bc") / "bc.yml", replicas="1")
    with compose_broker_stack(cfg_path, "bc") as stack:
        yield stack


def test_workers_reach_the_broker_service_by_name(broker_stack):
    engine = broker_stack["engine"]
    nodes = engine.workers()
    assert {pool: len(n) for pool, n in nodes.items()} == {"worker-a": 1, "worker-b": 1}, nodes
    cid = engine.containers("worker-a")[0]
    env = json.loads(
        subprocess.run(
            ["docker", "inspect", "-f", "{{json .Config.Env}}", cid], capture_output=True, text=True, timeout=30
        ).stdout
    )
    url = next(e.split("=", 1)[1] for e in env if e.startswith("BROKER_URL="))
    assert url.endswith(f"@broker:5672/{broker_stack['env']['DTS_BROKER_VHOST']}"), url


def test_dispatch_from_the_host_gets_both_results_from_the_containers(broker_stack):
    nodes = broker_stack["engine"].workers()
    proc = run_cli("dispatch.py", "--json", env=broker_stack["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert results["task_a"]["message"] == "Hello from Task A"
    assert results["task_b"]["message"] == "Hello from Task B"
    assert results["task_a"]["worker"] in nodes["worker-a"]
    assert results["task_b"]["worker"] in nodes["worker-b"]


def test_the_vhost_lives_in_the_container_not_on_the_host_broker(broker_stack):
    """The dispatch went to the containerised RabbitMQ: the test's vhost exists there, not on the host's."""
    cid = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={broker_stack['project']}",
            "--filter",
            "label=com.docker.compose.service=broker",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert len(cid) == 1
    inside = subprocess.run(
        ["docker", "exec", cid[0], "rabbitmqctl", "-q", "list_vhosts", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert broker_stack["env"]["DTS_BROKER_VHOST"] in inside
    if broker_answers():
        from dts.provision import rabbitmqctl

        assert broker_stack["env"]["DTS_BROKER_VHOST"] not in rabbitmqctl("list_vhosts", "name").stdout.split()
