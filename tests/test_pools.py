"""One declaration drives the workers: rename the queues in a temporary config and the local engine's
workers consume the renamed queues (the container engine's twin is in test_docker.py)."""

from __future__ import annotations

import json

import pytest
from helpers import CHECKOUT, fresh_vhost, local_fleet, run_cli, vhost_url, write_config

pytestmark = pytest.mark.integration
VHOST = f"dts-test-rename-{CHECKOUT}"


@pytest.fixture(scope="module")
def renamed(rabbitmq, tmp_path_factory):

    fresh_vhost(VHOST, "guest")
    path = write_config(
        tmp_path_factory.mktemp("rename") / "renamed.yml", replicas="1", queue_a="jobs_left", queue_b="jobs_right"
    )
    with local_fleet(path, vhost_url(VHOST), tmp_path_factory.mktemp("run")) as (settings, app, engine):
        yield path, settings, app, engine


def test_local_workers_consume_the_renamed_queues(renamed):
    _path, _settings, app, engine = renamed
    nodes = engine.workers()
    assert {pool: len(n) for pool, n in nodes.items()} == {"worker-a": 1, "worker-b": 1}
    active = app.control.inspect(destination=[*nodes["worker-a"], *nodes["worker-b"]], timeout=5).active_queues()
    assert {w: [q["name"] for q in qs] for w, qs in active.items()} == {
        nodes["worker-a"][0]: ["jobs_left"],
        nodes["worker-b"][0]: ["jobs_right"],
    }


def test_dispatch_routes_to_the_renamed_queues(renamed):
    path, settings, _, engine = renamed
    proc = run_cli("dispatch.py", "--config", str(path), "--json", env={"BROKER_URL": settings.broker.url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert (results["task_a"]["queue"], results["task_b"]["queue"]) == ("jobs_left", "jobs_right")
    assert results["task_a"]["worker"] == engine.workers()["worker-a"][0]
    assert results["task_b"]["worker"] == engine.workers()["worker-b"][0]


def test_a_worker_started_from_the_entry_point_names_its_pool(renamed):
    """The node name is <pool>@<host> on every engine: the pool is read back without guessing."""
    from dts.naming import pool_of_node

    _, _, _, engine = renamed
    for pool, nodes in engine.workers().items():
        assert [pool_of_node(n) for n in nodes] == [pool]


def test_down_for_another_broker_still_stops_and_counts_every_worker(renamed):
    """A worker host's `make down` run without the BROKER_URL it started with stops its workers all the same
    (and says how many): stopping never needs to know which broker they serve. Last in this module."""
    from dts.engines.local import LocalEngine

    _, settings, app, engine = renamed
    other = LocalEngine(settings.with_broker_url(vhost_url(VHOST + "-other")), app, run_dir=engine.run_dir)
    assert other.stop() == {"worker-a": -1, "worker-b": -1}
    assert engine.workers() == {"worker-a": [], "worker-b": []}
