"""The compose engine: each pool is a docker compose service, rendered from the pool declaration.

docker-compose.yml holds the one worker service definition (`x-worker`) and names no pool. For each
declared pool this module renders a service from it (`DTS_POOL`, the `python -m dts worker POOL` command,
the config mounted read-only, `stop_grace_period` from engine.stop_timeout) into
`.run/compose/<project>.pools.yml`, and runs compose with both files. `python scale.py compose` writes it.

The broker is the host's RabbitMQ (host.docker.internal) by default. With broker="compose" (`make up
BROKER=compose`) it is the `broker` service of the `broker` profile: the rendered workers then reach it by
service name and wait for it to be healthy (`depends_on: condition: service_healthy`), and the engine starts
it (and waits for its healthcheck) before the workers, so the host's CLIs find it on 127.0.0.1:DTS_BROKER_PORT.
With DTS_BROKER_TLS_DIR (a folder of ca.pem, server.pem, server.key) that service listens only on TLS (5671,
published on every interface as DTS_BROKER_TLS_PORT), requiring client certificates, and its workers use
amqps://broker:5671 with broker.tls's files (render_broker_tls).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from dts.config import PoolSettings, Settings, env_file, project_dir, project_name, read_env_file
from dts.config import run_dir as project_run_dir
from dts.config.env import CLUSTER_NODES
from dts.config.schema import mount_parts
from dts.engines.base import Engine, Option, check_sizes, declared_sizes, replicas, scale_plan, wait_for_pong
from dts.engines.containers import (
    COMPOSE_FILE,
    CONFIG_IN_IMAGE,
    bounded_logging,
    container_tls_files,
    worker_template,
)
from dts.engines.docker import compose_command
from dts.engines.image import DEFAULT_RABBITMQ, RABBITMQ_LINES, broker_image, build_worker_image, worker_image
from dts.errors import CliError, ExitCode
from dts.files import shown, write_atomic
from dts.naming import launch_argv, nodename, pool_of_node
from dts.reports.status_report import NodeStatus

log = logging.getLogger("dts.compose")  # the name users know from the log lines
DOCKER_TIMEOUT = 30  # seconds for one docker ps/inspect/logs call
BROKERS = ("host", "compose", "cluster")  # the workers' RabbitMQ: the host's, the `broker` service, or 3 nodes
BROKER_SERVICE = BROKER_PROFILE = "broker"  # the service and its profile in docker-compose.yml
CLUSTER_PROFILE = "cluster"  # the profile of the cluster's nodes in docker-compose.yml
CLUSTER_SERVICES = tuple(f"rabbit-{n}" for n in range(1, CLUSTER_NODES + 1))  # rabbit-1 is the seed
PROFILES = {"compose": BROKER_PROFILE, "cluster": CLUSTER_PROFILE}
MONITOR_SERVICE = "flower"  # docker-compose.yml's Flower service (profile `monitoring`): its config mounted here
BROKER_START_PERIOD = 60  # seconds: the healthcheck's start_period in docker-compose.yml


# the workers' URL for the `broker` service: .env's vhost/user (compose interpolates them), the container's port
def service_url(service: str) -> str:
    """The workers' URL for a broker service: .env's vhost/user (compose interpolates them), the container's port."""
    return "amqp://${DTS_BROKER_USER:-dts}:${DTS_BROKER_PASSWORD:-}@" + service + ":5672/${DTS_BROKER_VHOST:-dts}"


BROKER_SERVICE_URL = service_url(BROKER_SERVICE)
# the broker service with its TLS listener on (DTS_BROKER_TLS_DIR): the workers' amqps:// URL, where the
# container finds the folder, and the files the folder must hold
BROKER_SERVICE_TLS_URL = BROKER_SERVICE_URL.replace("amqp://", "amqps://", 1).replace(":5672/", ":5671/", 1)
BROKER_TLS_DIR_IN_CONTAINER = "/run/dts-broker-tls"
BROKER_TLS_FILES = ("ca.pem", "server.pem", "server.key")
CLUSTER_URL = ";".join(service_url(node) for node in CLUSTER_SERVICES)  # failover: every node, in turn


def broker_services(broker: str) -> tuple[str, ...]:
    """The compose services that are the workers' broker (none: the host's)."""
    return {"compose": (BROKER_SERVICE,), "cluster": CLUSTER_SERVICES}.get(broker, ())


def render_pools(
    settings: Settings, template: dict[str, Any], broker: str = "host", broker_tls: bool = False
) -> dict[str, Any]:
    """One compose service per declared pool, from the worker template (pure). broker="compose": the
    workers use the `broker` service (by name) and start only once it is healthy; with `broker_tls`, over
    its TLS listener (amqps://broker:5671, broker.tls's files)."""
    if broker not in BROKERS:
        raise CliError(f"BROKER must be one of {', '.join(BROKERS)} (got {broker!r})", ExitCode.USAGE)
    services = {}
    for pool in settings.pools.values():
        service = copy.deepcopy(template)
        tls = container_tls_files(settings)
        service["environment"] = {
            **template.get("environment", {}),
            "DTS_POOL": pool.name,
            **{env: path for env, _, path in tls},
        }
        if tls:  # the amqps:// URL of the host broker's TLS listener; the files mounted read-only
            url = service["environment"]["BROKER_URL"]
            service["environment"]["BROKER_URL"] = url.replace("amqp://", "amqps://", 1).replace(
                "${DTS_BROKER_PORT:-5672}", "${DTS_BROKER_TLS_PORT:-5671}"
            )
        if broker != "host":  # broker services, by name, on the compose network (TLS: the `broker` service's)
            url = BROKER_SERVICE_TLS_URL if broker_tls else BROKER_SERVICE_URL
            service["environment"]["BROKER_URL"] = CLUSTER_URL if broker == "cluster" else url
            service["depends_on"] = {name: {"condition": "service_healthy"} for name in broker_services(broker)}
        service["command"] = launch_argv(pool.name)
        service["volumes"] = [
            *template.get("volumes", []),
            f"{settings.path}:{CONFIG_IN_IMAGE}:ro",
            *(f"{host}:{path}:ro" for _, host, path in tls),
            *pool_volumes(pool),
        ]
        service["stop_grace_period"] = f"{settings.engine.stop_timeout:g}s"
        service["logging"] = bounded_logging(settings)
        services[pool.name] = {**service, **pool_devices(pool)}
    return {"services": services}


def render_broker_tls(folder: Path, gids: list[int]) -> dict[str, Any]:
    """What the `broker` service gets for its TLS listener (pure): the folder mounted read-only and named to
    the entrypoint (DTS_BROKER_TLS_DIR, which writes the listener's settings), the TLS port published on
    every interface (the plain one stays on the host's loopback, and nothing listens behind it), and the
    folder's groups, so the container's rabbitmq user reads a key that is readable by its group only."""
    return {
        "environment": {"DTS_BROKER_TLS_DIR": BROKER_TLS_DIR_IN_CONTAINER},
        "volumes": [f"{folder}:{BROKER_TLS_DIR_IN_CONTAINER}:ro"],
        "ports": ["${DTS_BROKER_TLS_PORT:-5671}:5671"],
        "group_add": [str(gid) for gid in dict.fromkeys(gids)],
    }


def pool_volumes(pool: PoolSettings) -> list[dict[str, Any]]:
    """A pool's own volumes, as bind mounts in compose's long syntax: docker then refuses a host path that is
    not there ("bind source path does not exist") rather than making an empty folder owned by root."""
    return [
        {"type": "bind", "source": host, "target": target, "read_only": mode == "ro"}
        for host, target, mode in map(mount_parts, pool.volumes)
    ]


def pool_devices(pool: PoolSettings) -> dict[str, Any]:
    """A pool's own devices as `--device` takes them, and the groups that own them on this host: the image's
    user is not root, and a device is usually open to its owner and group only (dialout, plugdev)."""
    if not pool.devices:
        return {}
    return {"devices": list(pool.devices), "group_add": [str(gid) for gid in device_groups(pool)]}


def device_groups(pool: PoolSettings, stat: Callable[[str], os.stat_result] = os.stat) -> list[int]:
    """The numeric groups that own the pool's devices on this host, once each (a device not there has none:
    `up` refuses it, check_devices)."""
    gids = set()
    for host, _, _ in map(mount_parts, pool.devices):
        try:
            gids.add(stat(host).st_gid)
        except OSError:
            continue
    return sorted(gids)


def check_devices(settings: Settings, desired: dict[str, int]) -> None:
    """CliError (exit 2) for a device of a pool that is to run here but is not on this host (unplugged, or
    another name): one line naming the key, before compose says it in its own words."""
    for name, count in desired.items():
        for host, _, _ in map(mount_parts, settings.pools[name].devices if count else ()):
            if not os.path.exists(host):
                raise CliError(
                    f"pools.{name}.devices names {host}, which is not on this host: plug it in, or drop it "
                    f"from {settings.path.name}",
                    ExitCode.USAGE,
                )


def cluster_status(cid: str) -> dict[str, Any] | None:
    """`rabbitmqctl cluster_status` of the node in container `cid`, as JSON; None if it does not answer."""
    try:
        out = subprocess.run(
            ["docker", "exec", cid, "rabbitmqctl", "-q", "cluster_status", "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT,
        )
        return json.loads(out.stdout) if out.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


def nodes_of(status: dict[str, Any]) -> list[NodeStatus]:
    """The members of a cluster from its `cluster_status` (pure): running or not, alarms, partitions."""
    running = set(status.get("running_nodes") or [])
    alarms: dict[str, list[str]] = {}
    for alarm in status.get("alarms") or []:  # e.g. {"node": "rabbit@rabbit-1", "type": "resource_alarm", ...}
        node = alarm.get("node", "?") if isinstance(alarm, dict) else "?"
        what = alarm.get("resource") or alarm.get("type") if isinstance(alarm, dict) else str(alarm)
        alarms.setdefault(node, []).append(str(what))
    partitions = status.get("partitions") or {}
    members = sorted(set(status.get("disk_nodes") or []) | set(status.get("ram_nodes") or []) | running)
    return [
        NodeStatus(
            node,
            "running" if node in running else "NOT RUNNING",
            tuple(alarms.get(node, ())),
            tuple(partitions.get(node, ())),
        )
        for node in members
    ]


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=DOCKER_TIMEOUT)
    return out.stdout + out.stderr if args[0] == "logs" else out.stdout


class ComposeEngine(Engine):
    """Workers as replicas of compose services, one service per pool, in one compose project."""

    name = "compose"
    cli_options = (
        Option(
            "--broker",
            help="the workers' RabbitMQ: host (default), compose (the `broker` service) or cluster (three nodes, the "
            "`cluster` profile); the last two need the compose engine",
            refusal="--broker compose|cluster (BROKER=compose|cluster) runs RabbitMQ as compose services: it needs "
            "the compose engine (this run uses {engine}); add --engine compose, start Docker",
            choices=BROKERS,
        ),
        Option(
            "--rabbitmq",
            help="the RabbitMQ line of the broker containers (--broker compose|cluster): 3.10 (default, Debian 12), "
            "4.0 (Debian 13) or 4.3 (Debian unstable); one image each, built once",
            refusal="--rabbitmq (RABBITMQ=) picks the RabbitMQ of the broker containers: it needs the compose "
            "engine (this run uses {engine}); add --engine compose --broker compose",
            choices=tuple(RABBITMQ_LINES),
        ),
    )
    cli_commands: ClassVar[dict[str, str]] = {
        "build": "build the project's worker image (compose engine)",
        "compose": "write the compose file rendered from the pools",
    }
    needs_docker = True
    needs_image = True
    serves_flower = True

    def __init__(
        self,
        settings: Settings,
        app,
        project: str | None = None,
        env: dict[str, str] | None = None,
        run_dir: Path | None = None,
        broker: str = "host",
        rabbitmq: str = DEFAULT_RABBITMQ,
    ):
        cmd = compose_command()
        if cmd is None:
            raise CliError(
                "neither `docker compose` nor `docker-compose` is installed; use ENGINE=local", ExitCode.USAGE
            )
        if broker not in BROKERS:
            raise CliError(f"BROKER must be one of {', '.join(BROKERS)} (got {broker!r})", ExitCode.USAGE)
        if rabbitmq != DEFAULT_RABBITMQ and broker == "host":
            raise CliError(
                f"--rabbitmq {rabbitmq} (RABBITMQ=) is the line of the broker containers: add --broker compose "
                "(BROKER=compose) or cluster; the host's RabbitMQ is the one installed there",
                ExitCode.USAGE,
            )
        self.settings, self.app, self.broker, self.rabbitmq = settings, app, broker, rabbitmq
        self.folder = project_dir(settings)  # compose's project directory: its .env, the relative paths
        self.project = project or os.environ.get("COMPOSE_PROJECT_NAME") or project_name(self.folder)
        self.pools_file = Path(run_dir or project_run_dir(self.folder)) / "compose" / f"{self.project}.pools.yml"
        self.cmd = [*cmd, "-f", str(COMPOSE_FILE), "-f", str(self.pools_file), "-p", self.project]
        self.cmd += ["--project-directory", str(self.folder)]
        self.env = {
            **os.environ,
            "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0"),
            "COMPOSE_DOCKER_CLI_BUILD": os.environ.get("COMPOSE_DOCKER_CLI_BUILD", "0"),
            **(env or {}),
        }
        self.env.setdefault(
            "DTS_IMAGE", worker_image(self.folder, self.env, settings.code)
        )  # the project's own worker image
        # the broker containers' image: the line's (dts-broker:4.3-<recipe hash>), unless $DTS_BROKER_IMAGE names one
        self.env["DTS_BROKER_IMAGE"] = broker_image(rabbitmq, self.env)
        # the broker containers' consumer_timeout (their entrypoint writes it to the node's configuration)
        self.env["DTS_CONSUMER_TIMEOUT_MS"] = str(round(settings.broker.consumer_timeout * 1000))
        if broker in PROFILES:  # the broker's profile on, beside any other (Flower's `monitoring`)
            profiles = [p for p in self.env.get("COMPOSE_PROFILES", "").split(",") if p]
            self.env["COMPOSE_PROFILES"] = ",".join(dict.fromkeys([*profiles, PROFILES[broker]]))

    def write_pools_file(self) -> Path:
        """Write the pool services for the current settings (atomically); returns the file."""
        clash = set(self.settings.pools) & set(yaml.safe_load(COMPOSE_FILE.read_text()).get("services") or {})
        if clash:
            raise CliError(
                f"pool {sorted(clash)[0]!r} has the name of a service of {COMPOSE_FILE.name} (Flower's): "
                f"rename the pool in {self.settings.path.name}",
                ExitCode.USAGE,
            )
        self.pools_file.parent.mkdir(parents=True, exist_ok=True)
        text = f"# Rendered from the pools in {self.settings.path} by dts.engines.compose; do not edit.\n"
        tls_dir = self.broker_tls_dir()
        rendered = render_pools(self.settings, worker_template(), self.broker, broker_tls=tls_dir is not None)
        if tls_dir is not None:
            gids = [tls_dir.stat().st_gid, *((tls_dir / name).stat().st_gid for name in BROKER_TLS_FILES)]
            rendered["services"][BROKER_SERVICE] = render_broker_tls(tls_dir, gids)
        # Flower's service (the `monitoring` profile) reads the same config as the workers
        rendered["services"][MONITOR_SERVICE] = {"volumes": [f"{self.settings.path}:{CONFIG_IN_IMAGE}:ro"]}
        text += yaml.safe_dump(rendered, sort_keys=False)
        write_atomic(self.pools_file, text)
        return self.pools_file

    def broker_tls_dir(self) -> Path | None:
        """The host folder of the `broker` service's TLS listener: DTS_BROKER_TLS_DIR from the environment or
        .env (relative to the project's folder), with broker="compose" only; None when unset. CliError
        (exit 2) when the folder lacks a file, the workers would have no CA (broker.tls), the broker is the
        cluster, or the image is not the project's (only its entrypoint writes the listener's settings)."""
        value = {**read_env_file(env_file(self.folder)), **self.env}.get("DTS_BROKER_TLS_DIR", "").strip()
        if not value or self.broker == "host":
            return None
        if self.broker != "compose":
            raise CliError(
                f"DTS_BROKER_TLS_DIR turns on the TLS listener of the `broker` service (--broker compose), not of "
                f"--broker {self.broker}: unset it, or use --broker compose",
                ExitCode.USAGE,
            )
        folder = (self.folder / value).resolve()
        missing = [name for name in BROKER_TLS_FILES if not (folder / name).is_file()]
        if missing:
            raise CliError(
                f"DTS_BROKER_TLS_DIR={value}: {shown(folder)} has no {', '.join(missing)}: the broker's TLS "
                "listener needs ca.pem (the CA of its clients), server.pem and server.key (its own)",
                ExitCode.USAGE,
            )
        if self.settings.broker.tls is None:
            raise CliError(
                f"DTS_BROKER_TLS_DIR is set, so the broker accepts TLS connections only, but {self.settings.path.name} "
                "has no broker.tls: add broker.tls with ca_file (the CA in that folder), cert_file and key_file "
                "(a client certificate it signed)",
                ExitCode.USAGE,
            )
        if not self.env["DTS_BROKER_IMAGE"].startswith("dts-broker:"):
            raise CliError(
                f"DTS_BROKER_TLS_DIR needs the project's broker image (its entrypoint writes the TLS settings), "
                f"not DTS_BROKER_IMAGE={self.env['DTS_BROKER_IMAGE']}: unset DTS_BROKER_IMAGE",
                ExitCode.USAGE,
            )
        return folder

    def render(self) -> tuple[Path, str]:
        """The pools file, and the compose command that uses it (with the `broker` service for broker="compose")."""
        path = self.write_pools_file()
        profiles = f"COMPOSE_PROFILES={PROFILES[self.broker]} " if self.broker in PROFILES else ""
        return path, f"{profiles}{' '.join(self.cmd)} up -d"

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        self.write_pools_file()
        log.info("compose -p %s %s", self.project, " ".join(args))
        proc = subprocess.run(
            [*self.cmd, *args], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise CliError(f"`compose {' '.join(args)}` failed: {last[0]}")
        return proc

    def _ps(self, service: str, *filters: str) -> list[str]:
        """Ids of this project's containers of `service` (docker ps filters: status=...)."""
        labels = [f"label=com.docker.compose.project={self.project}", f"label=com.docker.compose.service={service}"]
        return _docker("ps", "-q", "--no-trunc", *(arg for f in [*labels, *filters] for arg in ("--filter", f))).split()

    def containers(self, pool: str) -> list[str]:
        """Ids of the running (or crash-looping: restarting) containers of one pool's service."""
        return self._ps(pool, "status=running", "status=restarting")

    def _nodes(self, pool: str) -> dict[str, str]:
        """{worker-a@<container hostname>: container id} of the pool's running containers."""
        ids = self.containers(pool)
        hosts = _docker("inspect", "-f", "{{.Config.Hostname}}", *ids).split() if ids else []
        return {nodename(pool, host): cid for host, cid in zip(hosts, ids, strict=False)}

    def _restarts(self, cid: str) -> int:
        """How often docker restarted the container (a crash during start-up shows here)."""
        return int(_docker("inspect", "-f", "{{.RestartCount}}", cid).strip() or 0)

    def workers(self) -> dict[str, list[str]]:
        return {pool: sorted(self._nodes(pool)) for pool in self.settings.pools}

    def check_credentials(self) -> None:
        """CliError (exit 2) unless .env (or the engine's env) has the containers' broker user."""
        values = {**read_env_file(env_file(self.folder)), **self.env}
        if not values.get("DTS_BROKER_PASSWORD"):
            raise CliError(
                "no broker user for the containers (guest only works over loopback): run `make broker` "
                "to create one and write it to .env",
                ExitCode.USAGE,
            )

    def prepare(self) -> None:
        """broker="compose" or "cluster": start the broker services and wait until each healthcheck passes (the
        node runs, the workers' user exists, a cluster node has joined), within engine.start_timeout plus the
        healthcheck's start period. A cluster's nodes start together: on a first start the others join the
        seed as soon as it answers; on a restart (data kept) each node waits for its peers' tables, so none
        may wait for another to be healthy first."""
        services = broker_services(self.broker)
        if not services:
            return
        self.check_broker_line()
        self.check_credentials()
        deadline = time.monotonic() + self.settings.engine.start_timeout + BROKER_START_PERIOD
        self.compose("up", "-d", "--no-recreate", *services)
        for service in services:
            self._wait_healthy(service, deadline)
        self.line_record().write_text(self.rabbitmq + "\n")  # the line that booted on the volumes' data

    def line_record(self) -> Path:
        """The run-state file naming the RabbitMQ line whose node last came up healthy on this project's broker
        data volumes (broker="compose" or "cluster")."""
        return self.pools_file.parent / f"{self.project}.{self.broker}.rabbitmq"

    def check_broker_line(self) -> None:
        """CliError (exit 2), before any container starts, when the broker's data volumes exist and were last
        booted by another RabbitMQ line: a node does not boot on another line's data."""
        try:
            recorded = self.line_record().read_text().strip()
        except OSError:
            return  # no line recorded: new volumes, or made before the record existed
        if recorded == self.rabbitmq:
            return
        names = [f"{self.project}_{service}-data" for service in broker_services(self.broker)]  # compose's names
        volumes = [name for name in names if _docker("volume", "ls", "-q", "--filter", f"name=^{name}$").strip()]
        if not volumes:
            return  # deleted meanwhile (docker volume rm): the next node starts afresh
        raise CliError(
            f"the {self.broker} broker's data volume {' '.join(volumes)} "
            f"holds RabbitMQ {recorded}'s data, on which {self.rabbitmq} does not boot: keep RABBITMQ={recorded}, or "
            f"first `make down BROKER={self.broker} VOLUMES=1` (dts down --broker {self.broker} --volumes), which "
            "deletes it and the broker's queued messages with it",
            ExitCode.USAGE,
        )

    def _wait_healthy(self, service: str, deadline: float) -> None:
        cid = self._ps(service)[:1]
        if not cid:
            raise CliError(
                f"the {service} container is not running: see `docker-compose -p {self.project} logs {service}`",
                ExitCode.BROKER_UNREACHABLE,
            )
        state = ""
        while state != "healthy":
            state = _docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", cid[0]).strip()
            if state == "unhealthy" or time.monotonic() > deadline:
                said = _docker("logs", "--tail", "1", cid[0]).strip()[-300:]
                raise CliError(
                    f"the {service} container is {state or 'not healthy'} ({said}); see "
                    f"`docker-compose -p {self.project} logs {service}`",
                    ExitCode.BROKER_UNREACHABLE,
                )
            time.sleep(0.5 if state != "healthy" else 0)  # polling the health status, bounded by the deadline
        log.info("%s service healthy (%s)", service, cid[0][:12])

    def broker_nodes(self) -> list[NodeStatus]:
        """The `cluster` profile's nodes as a running one of them sees them (`rabbitmqctl cluster_status`):
        each member running or not, its alarms, the nodes it is partitioned from. None when this project
        runs no cluster node, or none answers."""
        for service in CLUSTER_SERVICES:
            for cid in self._ps(service, "status=running"):
                status = cluster_status(cid)
                if status is not None:
                    return nodes_of(status)
        return []

    def start_flower(self, port: int) -> str:
        """The `flower` service of the `monitoring` profile (the project's image) on 127.0.0.1:`port`."""
        from dts.flower_auth import PROFILE, SERVICE, healthy

        self.env.update(COMPOSE_PROFILES=PROFILE, DTS_FLOWER_PORT=str(port))
        self.check_credentials()  # the container cannot log in as guest: `dts broker` first
        self.compose("up", "-d", "--no-deps", SERVICE, timeout=300)
        url = f"http://127.0.0.1:{port}"
        if not healthy(url, time.monotonic() + self.settings.engine.start_timeout):
            raise CliError(
                f"the {SERVICE} container does not answer on {url}: see `{' '.join(self.cmd)} logs {SERVICE}`"
            )
        return f"Flower (compose service {SERVICE!r}, project {self.project}) on {url}; `dts down` stops it"

    def run_command(self, command: str) -> list[str]:
        """`build`: the project's worker image (dts.engines.image), unless its tag exists; `compose`: the
        pools file and the compose command that uses it."""
        if command == "build":
            return [f"worker image: {build_worker_image(self.folder, self.settings.code)}"]
        path, use = self.render()
        return [shown(path), f"use: {use}"]

    def logs(self, lines: int, follow: bool) -> None:
        self.write_pools_file()
        argv = [*self.cmd, "logs", "--tail", str(lines), *(["-f"] if follow else [])]
        subprocess.run(argv, cwd=self.folder, env=self.env, check=False)

    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        """Resize services; existing replicas are kept as they are (--no-recreate)."""
        return self._up(desired, recreate=False)

    def start(self) -> dict[str, int]:
        """Every pool at its declared replicas; compose replaces containers whose image or config changed."""
        return self._up(declared_sizes(self.settings), recreate=True)

    def _up(self, desired: dict[str, int], recreate: bool) -> dict[str, int]:
        """`compose up --scale` in one call for all pools (compose stops surplus replicas with SIGTERM and
        waits stop_grace_period); returns when the new workers answer ping."""
        check_sizes(desired, self.settings)
        check_devices(self.settings, desired)
        self.check_credentials()
        plan = scale_plan(replicas(self), desired)
        scales = [arg for pool, count in desired.items() for arg in ("--scale", f"{pool}={count}")]
        self.compose("up", "-d", *([] if recreate else ["--no-recreate"]), *scales, *desired)
        ids = {name: cid for pool in desired for name, cid in self._nodes(pool).items()}
        for pool, count in desired.items():
            have = sum(1 for name in ids if pool_of_node(name) == pool)
            if have != count:
                raise CliError(f"{pool}: compose runs {have} container(s), expected {count}; see `dts logs`")
        restarts = {name: self._restarts(cid) for name, cid in ids.items()}
        wait_for_pong(
            self.app,
            list(ids),
            time.monotonic() + self.settings.engine.start_timeout,
            alive=lambda name: self._restarts(ids[name]) == restarts[name],
            last_words=lambda name: _docker("logs", "--tail", "1", ids[name]).strip()[-300:],
        )
        return plan

    def stop(self, volumes: bool = False) -> dict[str, int]:
        """Every worker (and with broker="compose" the broker container) removed; the broker's data volume
        too only when `volumes`."""
        before = replicas(self)
        timeout = f"{self.settings.engine.stop_timeout:.0f}"
        self.compose("down", "--remove-orphans", "--timeout", timeout, *(["--volumes"] if volumes else []))
        if volumes:
            for broker in PROFILES:  # the data is gone: no line is recorded for it any more
                self.pools_file.parent.joinpath(f"{self.project}.{broker}.rabbitmq").unlink(missing_ok=True)
        return {pool: -count for pool, count in before.items()}

    def stopped_lines(self, volumes: bool) -> list[str]:
        if self.broker == "cluster":
            kept = "too" if volumes else "kept (--volumes removes them)"
            return [f"compose: the {len(CLUSTER_SERVICES)} broker nodes removed; their data volumes {kept}"]
        if self.broker != "compose":
            return []
        volume = "too" if volumes else "kept (--volumes removes it)"
        return [f"compose: broker container removed; its data volume {volume}"]
