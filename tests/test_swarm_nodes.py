"""A Docker Swarm of three nodes on one machine (`make swarm-nodes`: scripts/swarm-nodes.sh), with a node
killed mid-burst. Each node is a Docker engine of its own in a network namespace of its own; the worker
image reaches them through the local registry, the broker URL as a swarm secret, the broker being the
host's RabbitMQ at the nodes' gateway address. The stack is deployed on the manager (node 1) from a
temporary config (fresh vhost and user, health checks every 2 s, AMQP heartbeats every 5 s so the broker
lets go of a dead node's tasks quickly). Everything is removed after: stack, engines, namespaces, links,
data, registry.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    CHECKOUT,
    ROOT,
    build_images,
    compose_problem,
    finish,
    fresh_vhost,
    need_engine,
    popen_cli,
    run_cli,
    vhost_url,
    wait_for_line,
    write_config,
)

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.faults, pytest.mark.timeout(900)]

VHOST = USER = f"dts-nodes-{CHECKOUT}"
SCRIPT = ["sh", str(ROOT / "scripts" / "swarm-nodes.sh")]


def nodes(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def problem() -> str | None:
    missing = [tool for tool in ("nsenter", "unshare", "dockerd", "ip") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        return "needs root (network namespaces, extra dockerd daemons)"
    return compose_problem() or (f"missing {', '.join(missing)}" if missing else None)


def per_node(env: dict[str, str], pool: str) -> dict[str, int]:
    """`make status ENGINE=swarm`'s line `<pool> per node: dtssw1 1, dtssw2 1, ...` as a dict."""
    out = run_cli("scale.py", "status", "--engine", "swarm", env=env, timeout=120).stdout
    match = re.search(rf"^  {pool} per node: (.*)$", out, re.M)
    return {node: int(n) for node, n in (part.split() for part in match.group(1).split(", "))} if match else {}


def until(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds:g}s"
        time.sleep(1)  # polling the swarm, bounded by the deadline


@pytest.fixture(scope="module")
def swarm_nodes(rabbitmq, tmp_path_factory):
    need_engine(problem())
    try:
        nodes("up", "3")
        image = f"dts-worker:nodes-{CHECKOUT}"
        build_images({"DTS_IMAGE": image, "PY": sys.executable}, "scripts/build-image.sh")
        pushed = nodes("push", image).strip().splitlines()[-1]
        manager = dict(pair.split("=", 1) for pair in nodes("env").split())
        password = secrets.token_hex(12)
        fresh_vhost(VHOST, USER, password)
        cfg = write_config(tmp_path_factory.mktemp("nodes") / "nodes.yml", replicas="1")
        text = cfg.read_text().replace("  connect_timeout: 5\n", "  connect_timeout: 5\n  heartbeat: 5\n", 1)
        cfg.write_text(text.replace("  start_timeout: 60\n", "  start_timeout: 120\n  health_interval: 2\n"))
        assert "heartbeat: 5" in cfg.read_text() and "health_interval: 2" in cfg.read_text()
        env = {
            "DOCKER_HOST": manager["DOCKER_HOST"],
            "DTS_BROKER_HOST": manager["DTS_BROKER_HOST"],
            "DTS_IMAGE": pushed,
            "DTS_STACK": f"dts-nodes-{os.getpid()}",
            "DTS_CONFIG": str(cfg),
            "BROKER_URL": vhost_url(VHOST, USER, password),
            "DTS_BROKER_USER": USER,
            "DTS_BROKER_PASSWORD": password,
            "DTS_BROKER_VHOST": VHOST,
        }
        up = run_cli("scale.py", "up", "--engine", "swarm", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:
        if "env" in locals():
            run_cli("scale.py", "down", "--engine", "swarm", env=env, timeout=300)
        nodes("down")
        assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                    if ns.startswith("dtssw")]  # fmt: skip
        assert subprocess.run(["ip", "link", "show", "dtssw0"], capture_output=True).returncode != 0
        assert not Path("/var/lib/dts-swarm").exists() and not Path("/run/dts-swarm").exists()


def test_workers_spread_over_the_nodes_and_a_node_killed_mid_burst_loses_no_task(swarm_nodes, tmp_path):
    env = swarm_nodes
    grown = run_cli("scale.py", "set", "worker-a", "3", "--engine", "swarm", env=env, timeout=300)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    spread = per_node(env, "worker-a")
    assert sum(spread.values()) == 3 and len(spread) >= 2, spread  # placement spreads the replicas
    victim = next(node for node in sorted(spread, reverse=True) if node != "dtssw1")  # not the manager
    out = tmp_path / "load.json"
    cli_env = {k: v for k, v in env.items() if k != "DOCKER_HOST"}
    proc = popen_cli(cli_env, "load_test.py", "--tasks", "150", "--duration-a", "0.05", "--duration-b", "0.01",
                     "--output", str(out), "--timeout", "200")  # fmt: skip
    wait_for_line(proc.stderr, r"^progress: (\d+)/(\d+)")
    nodes("kill", victim.removeprefix("dtssw"))
    stdout, stderr = finish(proc, f"load_test.py with {victim} killed", timeout=260)
    assert proc.returncode == 0, stdout + stderr[-3000:]
    samples = json.loads(out.read_text())["runs"][0]["samples"]
    states = [s["state"] for s in samples]
    assert len(samples) == 300 and states.count("succeeded") == 300, {s: states.count(s) for s in set(states)}
    until(lambda: victim not in (now := per_node(env, "worker-a")) and sum(now.values()) == 3,
          f"swarm rescheduling {victim}'s replicas on the other nodes")  # fmt: skip


def test_a_node_back_takes_replicas_again_after_a_scale(swarm_nodes):
    env = swarm_nodes
    killed = [n for n in ("2", "3") if f"dtssw{n}" not in per_node(env, "worker-a")]
    assert killed, "the previous test left every node with a replica"
    nodes("revive", killed[0])
    manager = {"DOCKER_HOST": env["DOCKER_HOST"]}

    def ready() -> bool:
        ls = subprocess.run(["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
                            env={**os.environ, **manager}, capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        return f"dtssw{killed[0]} Ready" in ls

    until(ready, f"node {killed[0]} rejoining")
    grown = run_cli("scale.py", "set", "worker-a", "4", "--engine", "swarm", env=env, timeout=300)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    assert per_node(env, "worker-a").get(f"dtssw{killed[0]}", 0) >= 1  # the new replica went to the empty node
