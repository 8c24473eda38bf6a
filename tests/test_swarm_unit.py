"""Unit tests (no Docker): the swarm stack rendered from the pool declaration."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_config

from dts.config import load_settings
from dts.engines import resolve_engine
from dts.engines.swarm import SECRET_PATH, WORKER_UID, content_name, render_stack
from dts.errors import CliError, ExitCode
from dts.naming import launch_argv


def stack_for(tmp_path: Path, **overrides: str) -> dict:
    settings = load_settings(write_config(tmp_path / "c.yml", **overrides))
    return render_stack(settings, "dts-worker:t", tmp_path / "url", "s_broker_url_1", "s_config_1")


def test_one_service_per_pool_with_the_one_command_line_and_the_config_values(tmp_path):
    doc = stack_for(tmp_path, queue_a="qa", replicas="3", stop_timeout="45")
    assert doc["version"] == "3.8"
    assert list(doc["services"]) == ["worker-a", "worker-b"]
    a = doc["services"]["worker-a"]
    assert a["command"] == launch_argv("worker-a") and a["environment"]["DTS_POOL"] == "worker-a"
    assert a["image"] == "dts-worker:t" and "build" not in a  # stack deploy ignores build:
    assert a["deploy"]["replicas"] == 3 and a["stop_grace_period"] == "45s"
    assert a["deploy"]["update_config"] == {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"}
    assert a["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert a["healthcheck"]["interval"] == "60s"


def test_the_broker_url_is_a_secret_read_by_the_worker_user_only(tmp_path):
    doc = stack_for(tmp_path)
    assert doc["secrets"] == {"broker_url": {"name": "s_broker_url_1", "file": str(tmp_path / "url")}}
    for service in doc["services"].values():
        assert service["environment"]["BROKER_URL_FILE"] == SECRET_PATH
        assert "BROKER_URL" not in service["environment"]
        (secret,) = service["secrets"]
        assert (secret["target"], secret["uid"], secret["mode"]) == ("dts_broker_url", WORKER_UID, 0o400)
    assert "guest" not in str(doc["services"])  # no credentials in the services


def test_changed_content_gets_a_new_secret_name():
    assert content_name("s", "broker_url", b"amqp://a") != content_name("s", "broker_url", b"amqp://b")
    assert content_name("s", "broker_url", b"amqp://a").startswith("s_broker_url_")


def test_auto_never_chooses_swarm():
    assert resolve_engine("swarm") == "swarm"
    assert resolve_engine("auto") in ("compose", "local")


def test_the_workers_broker_host_is_the_nodes_own_unless_dts_broker_host_names_another(tmp_path):
    from dts.engines.swarm import SwarmEngine

    settings = load_settings(write_config(tmp_path / "c.yml"))
    creds = {"DTS_BROKER_USER": "u", "DTS_BROKER_PASSWORD": "p", "DTS_BROKER_VHOST": "v"}
    assert "@host.docker.internal:5672/" in SwarmEngine(settings, None, env=creds).broker_url()
    other = SwarmEngine(settings, None, env={**creds, "DTS_BROKER_HOST": "rabbit.example.org"})
    assert other.broker_url() == "amqp://u:p@rabbit.example.org:5672/v"


def test_a_pools_volumes_are_bind_mounts_and_its_devices_are_refused(tmp_path):
    path = tmp_path / "hw.yml"
    path.write_text("pools: {bench: {queues: [queue_a], volumes: [images:/images:ro]}, b: {queues: [queue_b]}}")
    doc = render_stack(load_settings(path), "dts-worker:t", tmp_path / "url", "s_broker_url_1", "s_config_1")
    assert doc["services"]["bench"]["volumes"] == [
        {"type": "tmpfs", "target": "/tmp"},
        {"type": "bind", "source": str(tmp_path / "images"), "target": "/images", "read_only": True},
    ]
    assert doc["services"]["b"]["volumes"] == [{"type": "tmpfs", "target": "/tmp"}]
    path.write_text("pools: {bench: {queues: [queue_a], devices: [/dev/null]}, b: {queues: [queue_b]}}")
    with pytest.raises(CliError) as err:  # `docker stack deploy` would drop them with a mere notice
        render_stack(load_settings(path), "dts-worker:t", tmp_path / "url", "s_broker_url_1", "s_config_1")
    assert err.value.exit_code == ExitCode.USAGE
    assert str(err.value) == (
        "pools.bench.devices: swarm services cannot be given devices (docker service create has no --device): "
        "run this pool on the compose engine, or drop its devices from hw.yml"
    )
