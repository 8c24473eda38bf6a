"""A load of declared tasks (issue 31, "Load tests over any tasks"): `load_test.py --mix task_a=1,add=2` on
real local workers of three pools (a callable of the project's own module on worker-c), through the real
broker (a vhost of its own): the counts per task type split by weight, every task accounted for and run
by its own pool, per-pool efficiency at most 1, and the JUnit file's aggregate testcase per task type."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import CHECKOUT, local_fleet, run_cli, vhost_url

pytestmark = pytest.mark.integration
VHOST = f"dts-test-mix-{CHECKOUT}"


@pytest.fixture(scope="module")
def fleet(rabbitmq, tmp_path_factory):
    from helpers import fresh_vhost

    fresh_vhost(VHOST)
    folder = tmp_path_factory.mktemp("mix") / "lab"
    folder.mkdir()
    (folder / "labjobs.py").write_text("def add(x=1, y=2):\n    return {'sum': x + y}\n")
    pools = {"worker-a": ["queue_a", 1], "worker-b": ["queue_b", 1], "worker-c": ["queue_c", 2]}
    doc = {  # JSON is YAML
        "name": "Mixed load",
        "broker": {"url": vhost_url(VHOST), "connect_timeout": 5},
        "pools": {name: {"queues": [queue], "replicas": 1, "concurrency": n} for name, (queue, n) in pools.items()},
        "tasks": {
            "task_a": {"duration": 0},
            "task_b": {"duration": 0},
            "add": {"queue": "queue_c", "call": "labjobs:add", "params": {"x": 1, "y": 2}},
        },
        "engine": {"name": "local", "stop_timeout": 30, "start_timeout": 60},
        "load_test": {"timeout": 60},
    }
    config = folder / "test-config.yml"
    config.write_text(json.dumps(doc))
    with local_fleet(config, vhost_url(VHOST), folder / ".run"):
        yield config


def test_a_weighted_mix_of_declared_tasks_runs_each_on_its_pool(fleet, tmp_path):
    junit = tmp_path / "load.xml"
    proc = run_cli("load_test.py", "--config", str(fleet), "--mix", "task_a=1,add=2", "--tasks", "6", "--json",
                   "--no-save", "--junit", str(junit), env={"BROKER_URL": vhost_url(VHOST)})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    doc = json.loads(proc.stdout)
    (report,) = doc["reports"]
    assert doc["load"]["mix"] == {"task_a": 1.0, "add": 2.0}
    types = report["task_types"]
    assert {name: (t["pool"], t["tasks"], t["completed"]) for name, t in types.items()} == {
        "task_a": ("worker-a", 4, 4),  # 6 x 2 types = 12 tasks, split 1:2
        "add": ("worker-c", 8, 8),
    }
    assert (report["tasks"], report["completed"], report["failed"], report["failures"]) == (12, 12, 0, [])
    assert sum(report["per_worker"].values()) == 12
    assert {w.split("@")[0] for w in report["per_worker"]} == {"worker-a", "worker-c"}  # not worker-b
    assert set(report["pools"]) == {"worker-a", "worker-c"} and report["pools"]["worker-c"]["slots"] == 2
    assert all(0 < p["efficiency"] <= 1 for p in report["pools"].values()) and 0 < report["efficiency"] <= 1
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"task_a: 4 tasks", "add: 8 tasks"}
    assert cases["add: 8 tasks"].get("classname") == "worker-c" and cases["add: 8 tasks"].find("failure") is None
