"""A three-node RabbitMQ cluster (`make up BROKER=cluster`: the compose `cluster` profile) with nodes killed
mid-burst, on a real Docker engine. The nodes are the project's broker image; real local `celery worker`
processes (1 + 1) and the CLIs are given the three nodes as failover URLs, so they start on rabbit-1, the
node every queue leader was declared on, and the node killed first. Quorum queues (`queue_type: auto` with
several URLs) for the work, dead-letter and reply queues.

Own compose project, vhost, user, host ports and run folder (its Erlang cookie), so neither a user's
cluster nor the host's RabbitMQ is touched; everything is removed after (containers, network, volumes).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers import (
    CHECKOUT,
    app_for,
    build_images,
    check_compose_version,
    check_rabbitmq_version,
    compose_leftovers,
    compose_problem,
    ended_for_the_broker,
    finish,
    local_fleet,
    need_engine,
    parametrize_by_line,
    popen_cli,
    run_cli,
    tally,
    wait_for_line,
    write_config,
)

pytestmark = [pytest.mark.docker, pytest.mark.faults, pytest.mark.timeout(900)]

NODES = ("rabbit-1", "rabbit-2", "rabbit-3")
BURST = ["load_test.py", "--tasks", "400", "--duration-a", "0.01", "--duration-b", "0.01"]


def pytest_generate_tests(metafunc):
    parametrize_by_line(metafunc, "cluster")  # the lines docs/samples/tested-versions.json names for each test


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """The cluster on RabbitMQ line request.param (its broker image), the workers and CLIs on its nodes."""
    need_engine(compose_problem())
    check_compose_version()
    from dts.config import load_settings
    from dts.testing import compose_cluster

    line = request.param
    build_images({"RABBITMQ": line}, "scripts/build-broker-image.sh")  # cached by tag
    cfg = write_config(tmp_path_factory.mktemp("cluster") / "cluster.yml", replicas="1")
    settings = load_settings(cfg)
    name = f"{line.replace('.', '')}-{os.getpid()}"
    project, vhost = f"dts-cl{name}", f"dts-cl-{CHECKOUT}-{name}"
    with compose_cluster(settings, tmp_path_factory.mktemp("cluster-run"), project, vhost, line) as running:
        assert settings.with_broker_url(running.url).broker.queues_type == "quorum"  # auto: several nodes
        app = app_for(settings.with_broker_url(running.url))
        try:
            with local_fleet(cfg, running.url, tmp_path_factory.mktemp("cluster-workers")) as (_, _, workers):
                env = {**running.env, "DTS_CONFIG": str(cfg)}
                limit = settings.broker.delivery_limit
                yield {
                    "env": env,
                    "engine": running.engine,
                    "workers": workers,
                    "app": app,
                    "line": line,
                    "delivery_limit": limit,
                }
        finally:
            app.close()
    assert compose_leftovers(project) == {"container": [], "network": [], "volume": []}


def rabbitmqctl(cluster, node: str, *args: str) -> str:
    """`rabbitmqctl -q ARGS` on one node (its container)."""
    argv = ["docker", "exec", container(cluster, node), "rabbitmqctl", "-q", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def container(cluster, node: str) -> str:
    """The id of the node's container, running or not."""
    labels = [
        f"label=com.docker.compose.project={cluster['engine'].project}",
        f"label=com.docker.compose.service={node}",
    ]
    argv = ["docker", "ps", "-aq", *(arg for label in labels for arg in ("--filter", label))]
    (cid,) = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split()
    return cid


def kill(cluster, *nodes: str) -> None:
    subprocess.run(["docker", "kill", *(container(cluster, n) for n in nodes)], check=True, capture_output=True)


RESTART_BOUND = 240  # seconds for the nodes started again to be healthy


def restart(cluster, *nodes: str) -> None:
    """The nodes started again (their data kept) and healthy: back in the cluster. A node whose boot fails
    is started again by its restart policy (`unless-stopped`, docker-compose.yml), as it would be in use:
    that counts, within RESTART_BOUND; past it, the failure shows the node's last log lines."""
    ids = [container(cluster, n) for n in nodes]
    subprocess.run(["docker", "start", *ids], check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + RESTART_BOUND
    for node, cid in zip(nodes, ids, strict=True):
        inspect = ["docker", "inspect", "-f", "{{.State.Health.Status}} {{.RestartCount}}", cid]
        while True:
            state, restarts = subprocess.run(inspect, capture_output=True, text=True, timeout=30).stdout.split()
            if state == "healthy":
                print(f"{node}: healthy again ({restarts} restart(s) by its policy)")
                break
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", "--tail", "40", cid], capture_output=True, text=True).stderr
                pytest.fail(f"{node} not healthy within {RESTART_BOUND}s of its start ({state}):\n{logs[-4000:]}")
            time.sleep(1)  # polling the node's health, bounded by the deadline


def consumers_back(cluster, seconds: float = 60) -> None:
    """Each work queue has its consumer again (the workers reconnected to a node with the queue's leader)."""
    from dts.amqp.checks import queue_stats
    from dts.amqp.deadline import Deadline

    app, until = cluster["app"], time.monotonic() + seconds
    while True:
        try:
            stats = queue_stats(app, ["queue_a", "queue_b"], Deadline.after(5))
            if all(s.consumers == 1 for s in stats.values()):
                return
        except Exception:  # noqa: BLE001 - a node still electing its leaders: ask again, within the bound
            pass
        assert time.monotonic() < until, "the workers did not consume again within 60 s of the nodes' return"
        time.sleep(0.5)  # polling the queues' consumers, bounded above


def said_at(cluster, node: str, text: str) -> str:
    """When the node's first log line holding `text` was written: docker's stamp (RFC 3339, up to 9 digits of
    fraction, trailing zeros dropped) as a comparable 'YYYY-MM-DDTHH:MM:SS.nnnnnnnnn'."""
    logs = subprocess.run(
        ["docker", "logs", "-t", container(cluster, node)], capture_output=True, text=True, timeout=60
    )
    found = [line.split()[0] for line in (logs.stdout + logs.stderr).splitlines() if text in line]
    assert found, f"{node} never said {text!r}"
    seconds, _, fraction = found[0].rstrip("Z").partition(".")
    return f"{seconds}.{fraction.ljust(9, '0')}"


def test_the_cluster_forms_and_every_queue_is_a_quorum_queue_on_three_nodes(cluster):
    # the nodes joined one at a time: rabbit-3 once rabbit-2 had joined and started (docker/broker/entrypoint.sh)
    joined = said_at(cluster, "rabbit-2", "rabbit@rabbit-2 joined the cluster of rabbit@rabbit-1; starting")
    assert said_at(cluster, "rabbit-3", "rabbit@rabbit-2 has joined and started: rabbit@rabbit-3 joins now") > joined
    for node in NODES:  # every node runs the line's exact version (the docs' table of tested versions)
        check_rabbitmq_version(cluster["line"], rabbitmqctl(cluster, node, "version"))
        if cluster["line"] == "4.3":  # a lost node's consumers' messages back after 10 s (docker/broker/entrypoint.sh)
            lost = rabbitmqctl(cluster, node, "eval", "application:get_env(rabbit, consumer_disconnected_timeout).")
            assert lost.strip() == "{ok,10000}", lost
    proc = run_cli("dispatch.py", "--json", env=cluster["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = run_cli("scale.py", "status", "--engine", "compose", env=cluster["env"], timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "nodes: rabbit@rabbit-1 running, rabbit@rabbit-2 running, rabbit@rabbit-3 running" in status.stdout
    vhost = cluster["env"]["DTS_BROKER_VHOST"]
    out = rabbitmqctl(cluster, "rabbit-1", "list_queues", "-p", vhost, "name", "type", "members", "arguments",
                      "--formatter", "json")  # fmt: skip
    queues = {q["name"]: q for q in json.loads(out)}
    for queue in ("queue_a", "queue_b", "queue_a.dead", "queue_b.dead"):
        assert queues[queue]["type"] == "quorum", queues[queue]
        assert sorted(queues[queue]["members"]) == [f"rabbit@{n}" for n in NODES]
    for queue in ("queue_a", "queue_b"):  # the project's delivery limit, not the broker's (20 on 4.x)
        arguments = {arg[0]: arg[-1] for arg in queues[queue]["arguments"]}  # [name, AMQP type, value]
        assert arguments["x-delivery-limit"] == cluster["delivery_limit"], queues[queue]
    assert not [q for q in queues if q.startswith("dts.amqp.replies.")]  # the run deleted its (quorum) reply queue


def test_the_node_everyone_is_connected_to_killed_mid_burst_loses_no_task(cluster, tmp_path):
    out = tmp_path / "load.json"
    proc = popen_cli(cluster["env"], *BURST, "--output", str(out), "--timeout", "120")
    first = wait_for_line(proc.stderr, r"^progress: (\d+)/(\d+)")
    assert int(first.group(1)) < int(first.group(2)), "the burst ended before the fault: make it longer"
    kill(cluster, "rabbit-1")
    stdout, stderr = finish(proc, "load_test.py with rabbit-1 killed", timeout=180)
    assert proc.returncode == 0, stdout + stderr[-3000:]
    counts = tally(json.loads(out.read_text())["runs"][0]["samples"], cluster["workers"].run_dir)
    print("rabbit-1 killed mid-burst:", counts)  # duplicates: at-least-once, counted, not asserted away
    assert counts["sent"] == 800 and counts["completed"] == 800 and counts["unknown"] == 0 and counts["lost"] == 0
    assert "broker connection lost" in stderr and "broker connection back" in stderr
    assert "Traceback" not in stdout + stderr
    restart(cluster, "rabbit-1")
    consumers_back(cluster)


def test_a_second_node_lost_ends_the_run_by_its_deadline_and_work_resumes_when_it_is_back(cluster, tmp_path):
    out = tmp_path / "load.json"
    proc = popen_cli(cluster["env"], *BURST, "--output", str(out), "--timeout", "15")
    wait_for_line(proc.stderr, r"^progress: (\d+)/(\d+)")
    t0 = time.monotonic()
    kill(cluster, "rabbit-1", "rabbit-2")
    stdout, stderr = finish(proc, "load_test.py with two nodes killed", timeout=60)
    ended_for_the_broker(proc, stdout, stderr, "load_test.py", "the broker cluster lost its majority: 1 of 3")
    assert time.monotonic() - t0 < 15 + 5  # its deadline, plus the final look at every node
    doc = json.loads(out.read_text())  # the report of every task: complete, not half-written
    counts = tally(doc["runs"][0]["samples"], cluster["workers"].run_dir)
    assert counts["sent"] == counts["completed"] + counts["unknown"] == 800 and counts["unknown"] > 0, counts
    refused = run_cli("dispatch.py", env=cluster["env"], timeout=60)
    assert refused.returncode == 3 and "lost its majority" in refused.stderr, refused.stderr
    health = run_cli("scale.py", "health", "--engine", "compose", "--json", env=cluster["env"], timeout=60)
    assert health.returncode == 3, health.stdout + health.stderr
    nodes = {n["node"]: n["state"] for n in json.loads(health.stdout)["nodes"]}  # as rabbit-3 sees them
    assert nodes == {"rabbit@rabbit-1": "NOT RUNNING", "rabbit@rabbit-2": "NOT RUNNING", "rabbit@rabbit-3": "running"}
    restart(cluster, "rabbit-1", "rabbit-2")
    consumers_back(cluster)
    proc = run_cli("dispatch.py", "--json", env=cluster["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr  # work resumes on the cluster
