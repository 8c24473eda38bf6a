"""Unit tests (no Docker engine): the compose services rendered from the pools (dts.engines.compose.render_pools),
the worker template in docker-compose.yml and the image (Dockerfile). Pools are declared once, in the
config: the static files name none, and every rendered service runs the engines' one worker entry point."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import ROOT, need_engine, write_config

from dts.config import load_settings
from dts.engines import compose
from dts.engines.compose import render_pools
from dts.engines.containers import COMPOSE_FILE, CONFIG_IN_IMAGE, worker_template
from dts.engines.image import BROKER_IMAGE
from dts.errors import CliError, ExitCode
from dts.naming import launch_argv

SHIPPED = load_settings(ROOT / "test-config.yml")
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def services_for(settings) -> dict:
    rendered = render_pools(settings, worker_template())
    assert list(rendered) == ["services"]
    return rendered["services"]


def dockerfile_instruction(name: str) -> list[str]:
    """Every `NAME ...` instruction of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(f"{name} ")]


# --------------------------------------------------------------------------- the template


def test_compose_file_is_the_one_worker_template():
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert COMPOSE_FILE.resolve() == ROOT / "docker-compose.yml"  # the package's data: the repository's file
    # every worker service is rendered from the pools; the file's own services (Flower) are behind a profile,
    # so `up`/`scale` of the pools never start them
    assert {name: svc["profiles"] for name, svc in doc["services"].items()} == {
        "flower": ["monitoring"],
        "broker": ["broker"],
        **{f"rabbit-{n}": ["cluster"] for n in (1, 2, 3)},
    }
    template = worker_template()
    assert template == doc["x-worker"]
    for key in ("command", "container_name", "ports", "volumes", "stop_grace_period"):
        assert key not in template, key  # set per pool by render_pools, or never (container_name, ports)
    assert "DTS_POOL" not in template["environment"]


@pytest.mark.parametrize("name", ["docker-compose.yml", "Dockerfile", "Makefile"])
def test_static_files_name_no_pool_and_no_queue(name):
    text = (ROOT / name).read_text()
    names = [*SHIPPED.pools, *SHIPPED.queues]
    assert names == ["worker-a", "worker-b", "queue_a", "queue_b"]
    found = [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]
    assert found == [], f"{name} names {found}: pools and queues are declared in test-config.yml only"


# --------------------------------------------------------------------------- rendered services


def test_one_service_per_shipped_pool_running_the_worker_entry_point():
    services = services_for(SHIPPED)
    assert list(services) == ["worker-a", "worker-b"]
    for pool, svc in services.items():
        assert "container_name" not in svc and "ports" not in svc, pool  # both break --scale
        assert "host.docker.internal:host-gateway" in svc["extra_hosts"]
        assert "@${DTS_BROKER_HOST:-host.docker.internal}:" in svc["environment"]["BROKER_URL"]
        assert "guest" not in svc["environment"]["BROKER_URL"]  # guest only works over loopback
        assert svc["environment"]["DTS_POOL"] == pool
        assert svc["environment"]["DTS_CONFIG"] == CONFIG_IN_IMAGE
        assert svc["command"] == launch_argv(pool) == ["python", "-m", "dts", "worker", pool]
        assert svc["stop_grace_period"] == "60s"  # engine.stop_timeout
        assert svc["volumes"] == [f"{ROOT / 'test-config.yml'}:{CONFIG_IN_IMAGE}:ro"]
        assert svc["read_only"] is True and svc["restart"] == "unless-stopped"
        assert svc["image"] == worker_template()["image"]  # one image for every pool


def test_rendering_leaves_the_template_alone():
    template = worker_template()
    before = copy.deepcopy(template)
    services = render_pools(SHIPPED, template)["services"]
    assert template == before
    services["worker-a"]["extra_hosts"].append("x:1.2.3.4")
    services["worker-a"]["environment"]["EXTRA"] = "1"
    assert "x:1.2.3.4" not in services["worker-b"]["extra_hosts"]
    assert "EXTRA" not in services["worker-b"]["environment"]


def test_rendered_file_is_plain_yaml():
    rendered = render_pools(SHIPPED, worker_template())
    assert yaml.safe_load(yaml.safe_dump(rendered, sort_keys=False)) == rendered


def test_renamed_queues_and_stop_timeout_follow_the_config(tmp_path):
    path = write_config(tmp_path / "renamed.yml", queue_a="jobs_a", queue_b="jobs_b", stop_timeout="30")
    settings = load_settings(path)
    services = services_for(settings)
    assert list(services) == ["worker-a", "worker-b"]
    for pool, svc in services.items():
        assert svc["stop_grace_period"] == "30s"
        assert svc["volumes"] == [f"{path}:{CONFIG_IN_IMAGE}:ro"]
        assert svc["command"] == launch_argv(pool)
        assert "jobs_a" not in str(svc) and "queue_a" not in str(svc)  # queues come from the mounted config


def test_an_extra_pool_is_an_extra_service(tmp_path):
    path = tmp_path / "three.yml"
    path.write_text(
        textwrap.dedent("""\
        pools:
          worker-a: {queues: [queue_a]}
          worker-b: {queues: [queue_b]}
          reports-2: {queues: [queue_c, queue_d], replicas: 0, execution_pool: threads}
        engine: {stop_timeout: 1.5}
        """)
    )
    services = services_for(load_settings(path))
    assert list(services) == ["worker-a", "worker-b", "reports-2"]
    extra = services["reports-2"]
    assert extra["environment"]["DTS_POOL"] == "reports-2"
    assert extra["command"] == ["python", "-m", "dts", "worker", "reports-2"]
    assert extra["stop_grace_period"] == "1.5s"
    assert extra["volumes"] == [f"{path}:{CONFIG_IN_IMAGE}:ro"]
    assert "host.docker.internal:host-gateway" in extra["extra_hosts"]
    assert "container_name" not in extra and "ports" not in extra


def test_template_volumes_and_environment_are_kept(tmp_path):
    template = {**worker_template(), "volumes": ["cache:/cache"], "environment": {"A": "1"}}
    svc = render_pools(SHIPPED, template)["services"]["worker-b"]
    assert svc["volumes"] == ["cache:/cache", f"{SHIPPED.path}:{CONFIG_IN_IMAGE}:ro"]
    assert svc["environment"] == {"A": "1", "DTS_POOL": "worker-b"}


# --------------------------------------------------------------------------- BROKER=compose


def test_with_the_broker_service_the_workers_use_it_by_name_and_wait_for_its_health():
    host = services_for(SHIPPED)
    services = render_pools(SHIPPED, worker_template(), broker="compose")["services"]
    assert list(services) == list(host)
    for pool, svc in services.items():
        url = svc["environment"]["BROKER_URL"]
        assert url == "amqp://${DTS_BROKER_USER:-dts}:${DTS_BROKER_PASSWORD:-}@broker:5672/${DTS_BROKER_VHOST:-dts}"
        assert svc["depends_on"] == {"broker": {"condition": "service_healthy"}}
        assert {k: v for k, v in svc.items() if k not in ("environment", "depends_on")} == {
            k: v for k, v in host[pool].items() if k != "environment"
        }
    for svc in host.values():  # the default path: the host's broker, no dependency on a profiled service
        assert "depends_on" not in svc


def test_an_unknown_broker_is_a_usage_error():
    from dts.errors import CliError, ExitCode

    with pytest.raises(CliError) as err:
        render_pools(SHIPPED, worker_template(), broker="cloud")
    assert err.value.exit_code == ExitCode.USAGE and "BROKER must be one of host, compose, cluster" in str(err.value)


def test_broker_service_profile_volume_port_and_healthcheck():
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    svc = doc["services"]["broker"]
    assert svc["profiles"] == ["broker"] and svc["hostname"] == "broker"
    assert svc["environment"]["RABBITMQ_NODENAME"] == "rabbit@broker"  # data keyed by a fixed node name
    assert svc["image"] == "${DTS_BROKER_IMAGE:-dts-broker:latest}"  # dts up sets it; the override picks another
    assert svc["volumes"] == ["broker-data:/var/lib/rabbitmq"] and "broker-data" in doc["volumes"]
    assert svc["ports"] == ["127.0.0.1:${DTS_BROKER_PORT:-5672}:5672"]  # loopback only
    assert {svc["environment"][f"RABBITMQ_DEFAULT_{k}"] for k in ("USER", "PASS", "VHOST")} == {
        "${DTS_BROKER_USER:-dts}",
        "${DTS_BROKER_PASSWORD:-}",
        "${DTS_BROKER_VHOST:-dts}",
    }
    assert "rabbitmqctl" in svc["healthcheck"]["test"][1] and svc["healthcheck"]["interval"] == "10s"


def test_the_broker_script_asks_the_package_for_each_rabbitmq_lines_tag_and_suite():
    from dts.engines.image import RABBITMQ_LINES

    for line, (tag, suite) in RABBITMQ_LINES.items():
        proc = subprocess.run([sys.executable, "-m", "dts.engines.image", "broker", line], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.stdout.split() == [tag, suite], proc.stdout + proc.stderr
    assert "-m dts.engines.image broker" in (ROOT / "scripts/build-broker-image.sh").read_text()


def test_the_broker_tag_follows_the_recipe(tmp_path):
    from dts.engines.image import broker_tag, recipe_hash

    assert BROKER_IMAGE == broker_tag("3.10") == f"dts-broker:3.10-{recipe_hash()}"
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    before = recipe_hash(tmp_path)
    (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\n")
    assert recipe_hash(tmp_path) != before and len(before) == 10


def test_the_rabbitmq_line_picks_the_broker_image_and_an_unknown_line_is_refused(monkeypatch):
    from dts.engines.image import RABBITMQ_LINES, broker_image

    monkeypatch.delenv("DTS_BROKER_IMAGE", raising=False)
    assert broker_image("4.3") == RABBITMQ_LINES["4.3"][0] and broker_image() == BROKER_IMAGE
    assert re.fullmatch(r"dts-broker:4\.3-[0-9a-f]{10}", broker_image("4.3"))
    assert broker_image("4.3", {"DTS_BROKER_IMAGE": "rabbitmq:4-management"}) == "rabbitmq:4-management"
    with pytest.raises(CliError) as err:
        broker_image("3.8")
    assert err.value.exit_code == ExitCode.USAGE and "choose from 3.10, 4.0, 4.3" in str(err.value)


def test_with_the_cluster_the_workers_get_every_node_as_failover_urls_and_wait_for_each():
    from dts.engines.compose import CLUSTER_SERVICES

    services = render_pools(SHIPPED, worker_template(), broker="cluster")["services"]
    for svc in services.values():
        urls = svc["environment"]["BROKER_URL"].split(";")
        assert [u.split("@", 1)[1].split(":", 1)[0] for u in urls] == list(CLUSTER_SERVICES)
        assert svc["depends_on"] == {node: {"condition": "service_healthy"} for node in CLUSTER_SERVICES}


def test_cluster_nodes_profile_names_volumes_ports_and_one_cookie_secret():
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    nodes = {name: svc for name, svc in doc["services"].items() if "cluster" in svc.get("profiles", [])}
    assert sorted(nodes) == ["rabbit-1", "rabbit-2", "rabbit-3"]
    for n, (name, svc) in enumerate(sorted(nodes.items()), 1):
        assert svc["hostname"] == name and svc["environment"]["RABBITMQ_NODENAME"] == f"rabbit@{name}"
        assert svc["environment"]["DTS_CLUSTER_SEED"] == "rabbit@rabbit-1"  # every node joins the first
        assert svc["volumes"] == [f"{name}-data:/var/lib/rabbitmq"] and f"{name}-data" in doc["volumes"]
        assert svc["ports"] == [f"127.0.0.1:${{DTS_CLUSTER_PORT_{n}:-568{n}}}:5672"]  # loopback only
        assert svc["secrets"] == ["erlang_cookie"] and svc["image"] == doc["services"]["broker"]["image"]
    assert doc["secrets"]["erlang_cookie"]["file"].endswith("/cluster/erlang.cookie")


def test_the_cli_url_lists_every_cluster_node_when_env_names_their_ports():
    from dts.config import broker_url_from_env_file

    creds = {"DTS_BROKER_USER": "u", "DTS_BROKER_PASSWORD": "p", "DTS_BROKER_VHOST": "v"}
    ports = {f"DTS_CLUSTER_PORT_{n}": str(5680 + n) for n in (1, 2, 3)}
    assert broker_url_from_env_file({**creds, **ports}) == ";".join(
        f"amqp://u:p@localhost:{5680 + n}/v" for n in (1, 2, 3)
    )
    assert broker_url_from_env_file({**creds, "DTS_CLUSTER_PORT_1": "5681"}) == "amqp://u:p@localhost:5672/v"


# --------------------------------------------------------------------------- a pool's devices and volumes

HARDWARE = """\
pools:
  bench: {queues: [queue_a], devices: [/dev/null:/dev/board:rw], volumes: ["images:/images:ro", "/srv/out:/out"]}
  plain: {queues: [queue_b]}
"""


def hardware(tmp_path: Path, text: str = HARDWARE):
    path = tmp_path / "hw.yml"
    path.write_text(text)
    return load_settings(path)


def test_a_pools_devices_and_volumes_are_on_its_service_only(tmp_path):
    services = services_for(hardware(tmp_path))
    bench, plain = services["bench"], services["plain"]
    assert bench["devices"] == ["/dev/null:/dev/board:rw"]
    assert bench["group_add"] == [str(os.stat("/dev/null").st_gid)]  # the image's user may open it
    assert bench["volumes"][1:] == [
        {"type": "bind", "source": str(tmp_path / "images"), "target": "/images", "read_only": True},
        {"type": "bind", "source": "/srv/out", "target": "/out", "read_only": False},
    ]
    assert bench["volumes"][0] == plain["volumes"][0] == f"{tmp_path / 'hw.yml'}:{CONFIG_IN_IMAGE}:ro"
    # the template's hardening stays: read-only root, the image's non-root user, no privileges
    assert bench["read_only"] is True and "user" not in bench and "privileged" not in bench
    assert bench["tmpfs"] == ["/tmp"]
    assert "devices" not in plain and "group_add" not in plain and len(plain["volumes"]) == 1


def test_the_groups_added_are_those_owning_the_devices_on_this_host(tmp_path):
    owners = {"/dev/ttyUSB0": 20, "/dev/ttyACM0": 20, "/dev/video0": 44}

    def stat(path: str) -> SimpleNamespace:
        return SimpleNamespace(st_gid=owners[path]) if path in owners else os.stat(path)

    devices = "[/dev/ttyUSB0, /dev/ttyACM0:/dev/board, /dev/video0, /dev/gone]"
    settings = hardware(tmp_path, f"pools: {{bench: {{queues: [queue_a, queue_b], devices: {devices}}}}}")
    assert compose.device_groups(settings.pools["bench"], stat) == [20, 44]  # once each; none for a missing one


def test_up_refuses_a_device_not_on_this_host_in_one_line(tmp_path):
    settings = hardware(tmp_path, "pools: {bench: {queues: [queue_a], devices: [/dev/gone]}, b: {queues: [queue_b]}}")
    with pytest.raises(CliError) as err:
        compose.check_devices(settings, {"bench": 1, "b": 1})
    assert err.value.exit_code == ExitCode.USAGE
    assert (
        str(err.value)
        == "pools.bench.devices names /dev/gone, which is not on this host: plug it in, or drop it from hw.yml"
    )
    compose.check_devices(settings, {"bench": 0})  # a pool scaled to 0 opens nothing


def test_local_workers_warn_that_devices_and_volumes_are_the_containers(tmp_path, monkeypatch, caplog):
    from dts.engines.local import LocalEngine

    engine = LocalEngine(hardware(tmp_path), app=None, run_dir=tmp_path / ".run", env={})
    monkeypatch.setattr(engine, "_resize", lambda desired: {})
    monkeypatch.setattr(engine, "_stop_unsupervised", lambda: None)
    engine.resize({"bench": 1, "plain": 1})
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        "pools.bench: devices and volumes apply to the container engines only; local workers are processes of "
        "this host and open its own paths"
    ]


# --------------------------------------------------------------------------- the image


def test_dockerfile_cmd_is_the_exec_form_worker_entry_point():
    (cmd,) = dockerfile_instruction("CMD")
    assert yaml.safe_load(cmd) == ["python", "-m", "dts", "worker"]  # exec form: a JSON list, no shell
    assert launch_argv("worker-a")[:4] == yaml.safe_load(cmd)  # the same entry point as compose's command


def test_dockerfile_healthcheck_pings_the_containers_own_worker():
    (check,) = dockerfile_instruction("HEALTHCHECK")
    options, cmd = check.split(" CMD ", 1)
    assert yaml.safe_load(cmd) == ["python", "-m", "dts", "worker", "--ping"]
    interval = re.search(r"--interval=(\d+)s", options)
    assert interval and int(interval.group(1)) >= 30


def test_dockerfile_runs_unprivileged_from_a_configurable_base():
    assert dockerfile_instruction("USER") == ["10001:10001"]
    lines = [line for line in DOCKERFILE.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "ARG BASE_IMAGE=python:3.12-slim" and lines[1] == "FROM ${BASE_IMAGE}"
    env = " ".join(dockerfile_instruction("ENV"))
    for var in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", f"DTS_CONFIG={CONFIG_IN_IMAGE}"):
        assert var in env.split()
    # the USER line comes after every RUN (installing needs root) and before CMD
    order = [line.split()[0] for line in lines if line.split()[0] in ("RUN", "USER", "CMD") and line[0] != " "]
    assert order[-2:] == ["USER", "CMD"] and "USER" not in order[:-2]


def test_dockerfile_copies_what_the_worker_imports():
    copied = [shlex.split(c)[:-1] for c in dockerfile_instruction("COPY")]
    sources = {Path(src).as_posix().rstrip("/") for srcs in copied for src in srcs}
    assert {"requirements.txt", "dts"} == sources  # the pinned requirements and the package, nothing else


def test_every_engine_bounds_a_workers_logs(tmp_path):
    """Compose and swarm services get json-file rotated at engine.log_max_mb with engine.log_files kept (Docker's
    default is one file that grows without bound); local workers get supervisord's rotation with the same
    bound. Defaults: 10 MB x 3 files."""
    from dts.engines.supervise import program
    from dts.engines.swarm import render_stack

    path = tmp_path / "logs.yml"
    path.write_text("pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n")
    path.write_text(path.read_text() + "engine: {log_max_mb: 5, log_files: 4}\n")
    for settings, size, files in (
        (load_settings(path), "5m", "4"),
        (load_settings(write_config(tmp_path / "d.yml")), "10m", "3"),
    ):
        bound = {"driver": "json-file", "options": {"max-size": size, "max-file": files}}
        assert {svc["logging"] == bound for svc in services_for(settings).values()} == {True}
        stack = render_stack(settings, "img:1", Path("/dev/null"), "s", "c")["services"]
        assert {svc["logging"] == bound for svc in stack.values()} == {True}
    local = program(["celery"], {}, tmp_path, tmp_path / "w.log", 60, (5, 4))
    assert (local["stdout_logfile_maxbytes"], local["stdout_logfile_backups"]) == ("5MB", "3")


def test_compose_v2_is_used_where_it_answers_and_dts_compose_picks_v1(monkeypatch):
    """.ci/install-docker.sh installs the v2 plugin beside Debian 12's docker-compose 1.29: CI runs the compose
    tests on v2, and the one that sets DTS_COMPOSE=docker-compose on v1.29."""
    import shutil

    from dts.engines.docker import compose_command

    need_engine(None if shutil.which("docker-compose") and shutil.which("docker") else "no docker or docker-compose")
    monkeypatch.delenv("DTS_COMPOSE", raising=False)
    assert compose_command() == ["docker", "compose"]
    monkeypatch.setenv("DTS_COMPOSE", "docker-compose")
    assert compose_command() == ["docker-compose"]
    monkeypatch.setenv("DTS_COMPOSE", "podman-compose")
    with pytest.raises(CliError) as refused:
        compose_command()
    assert refused.value.exit_code == ExitCode.USAGE and "DTS_COMPOSE must be one of" in str(refused.value)


def test_an_unknown_rabbitmq_line_is_one_line_exit_2():
    from helpers import run_cli

    proc = run_cli("scale.py", "up", "--engine", "compose", "--broker", "compose", "--rabbitmq", "3.8")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "invalid choice: '3.8' (choose from '3.10', '4.0', '4.3')" in proc.stderr
