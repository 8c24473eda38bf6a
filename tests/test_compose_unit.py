"""Unit tests (no engine): the compose services and the image run the same worker command line as the
local back end, and keep the properties that --scale and warm shutdown need."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pools import compose_env

from celery_app import load_config, worker_argv

ROOT = Path(__file__).resolve().parent.parent
CFG = load_config(ROOT / "test-config.yml")


def substitute(value: str, env: dict[str, str]) -> str:
    """${VAR:-default} as compose does it."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), value)


def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_command_is_the_local_worker_command():
    env = compose_env(CFG)
    for pool in ("worker-a", "worker-b"):
        command = [substitute(part, env) for part in services()[pool]["command"]]
        assert command == worker_argv(CFG.pools[pool], f"{pool}@%h", CFG.prefetch_multiplier)


def test_services_can_scale_and_reach_the_host():
    for pool, svc in services().items():
        assert "container_name" not in svc and "ports" not in svc, pool  # both break --scale
        assert "host.docker.internal:host-gateway" in svc["extra_hosts"]
        assert "host.docker.internal" in svc["environment"]["BROKER_URL"]
        assert "guest" not in svc["environment"]["BROKER_URL"]
        assert svc["environment"]["DTS_POOL"] == pool
        assert svc["read_only"] is True and svc["restart"] == "unless-stopped"
        assert svc["stop_grace_period"] == "60s"


def test_dockerfile_runs_celery_as_pid_1_unprivileged_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[3] == "ARG BASE_IMAGE=python:3.12-slim"
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(
        r"^HEALTHCHECK .*\n\s+CMD celery -A celery_app inspect ping --destination \"\$DTS_POOL@\$HOSTNAME\"", text, re.M
    )
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    assert yaml.safe_load(cmd) == worker_argv(CFG.pools["worker-a"], "worker-a@%h", 1)  # exec form
    for var in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert var in text
