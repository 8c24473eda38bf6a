"""The swarm engine: each pool is a service of one Docker Swarm stack, rendered from the pool declaration.

For each declared pool this module renders a v3.8 stack service (the same `python -m dts worker POOL`
command as every engine, DTS_POOL, replicas from the config, stop_grace_period = engine.stop_timeout)
into `.run/swarm/<stack>.stack.yml` and deploys it with `docker stack deploy`. The config reaches the
containers as a swarm config and the workers' broker URL as a swarm secret (read through
$BROKER_URL_FILE): neither is in the stack file or the image, and both reach every node of the swarm.

    engine = SwarmEngine(settings, app, init_swarm=True)   # `make deploy ENGINE=swarm`
    engine.start()                   # docker stack deploy; returns when every worker answers ping
    engine.resize({"worker-a": 3})   # docker service scale <stack>_worker-a=3 --detach=false
    engine.stop()                    # docker stack rm; returns when nothing of the stack is left

`docker stack deploy` ignores `build:` and `.env`: the image is built first (`make build`) and referenced
by tag ($DTS_IMAGE, default the project's own, dts.engines.image); a multi-host swarm needs it pushed to a registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import yaml

from dts.amqp.checks import queue_stats
from dts.amqp.deadline import Deadline
from dts.config import (
    PoolSettings,
    Settings,
    broker_url_from_env_file,
    env_file,
    project_dir,
    project_name,
    read_env_file,
)
from dts.config import run_dir as project_run_dir
from dts.config.schema import mount_parts
from dts.engines.base import Engine, Option, check_sizes, declared_sizes, replicas, scale_plan, wait_for_pong
from dts.engines.containers import CONFIG_IN_IMAGE, bounded_logging, container_tls_files, worker_template
from dts.engines.image import worker_image
from dts.errors import CliError, ExitCode
from dts.files import shown, write_atomic
from dts.naming import launch_argv, nodename

log = logging.getLogger("dts.swarm")  # the name users know from the log lines
CONTAINER_BROKER_HOST = "host.docker.internal"  # the host's broker, as compose reaches it (extra_hosts)
SECRET = "broker_url"  # the stack's secret key; Docker names it <stack>_broker_url_<hash>
SECRET_PATH = "/run/secrets/dts_broker_url"  # where a worker reads it ($BROKER_URL_FILE)
CONFIG = "dts_config"
WORKER_UID = "10001"  # the image's USER (Dockerfile): the secret is readable by it alone (mode 0400)
INIT_ARGV = ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"]
NAMESPACE_LABEL = "com.docker.stack.namespace"
LIVE_STATES = ("starting", "running")  # a task's container exists and runs (starting: health not yet passed)
DOCKER_TIMEOUT = 60  # seconds for one docker call (scale and deploy have their own)
REMOVE_GRACE = 60  # seconds `stack rm` may take beyond engine.stop_timeout before stop() gives up


def content_name(stack: str, key: str, content: bytes) -> str:
    """'<stack>_<key>_<8 hex>': swarm secrets and configs cannot change, so a new content gets a new name
    (and a redeploy rolls the services onto it)."""
    return f"{stack}_{key}_{hashlib.sha256(content).hexdigest()[:8]}"


def _secret(source: str, target: str) -> dict[str, Any]:
    """A secret in the task, readable by the image's user only."""
    return {"source": source, "target": target, "uid": WORKER_UID, "gid": WORKER_UID, "mode": 0o400}


def service(
    settings: Settings, pool: PoolSettings, image: str, log_format: str, tls: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """One pool's service: the engines' one command, the broker URL (and TLS files) as secrets, warm stops."""
    template = worker_template()
    return {
        "image": image,
        "command": launch_argv(pool.name),
        "environment": {
            "DTS_POOL": pool.name,
            "DTS_CONFIG": CONFIG_IN_IMAGE,
            "BROKER_URL_FILE": SECRET_PATH,
            "LOG_FORMAT": log_format,
            **{env: path for env, _, path in tls},
        },
        "extra_hosts": list(template["extra_hosts"]),
        "read_only": bool(template.get("read_only", True)),
        "volumes": [
            *({"type": "tmpfs", "target": path} for path in template.get("tmpfs", [])),
            *(  # the pool's own: `docker service create --mount type=bind,...`, on whichever node runs the task
                {"type": "bind", "source": host, "target": target, "read_only": mode == "ro"}
                for host, target, mode in map(mount_parts, pool.volumes)
            ),
        ],
        "configs": [{"source": CONFIG, "target": CONFIG_IN_IMAGE, "mode": 0o444}],
        "secrets": [
            _secret(SECRET, Path(SECRET_PATH).name),
            *(_secret(env.lower(), Path(path).name) for env, _, path in tls),
        ],
        # the image's check (this container's worker answers ping); a new task counts as running once it
        # passes, so the interval bounds how long `docker service scale --detach=false` takes
        "healthcheck": {
            "interval": f"{settings.engine.health_interval:g}s",
            "timeout": "20s",
            "start_period": "30s",
            "retries": 3,
        },
        "stop_grace_period": f"{settings.engine.stop_timeout:g}s",  # SIGTERM, then this long for a warm stop
        "logging": bounded_logging(settings),
        "deploy": {
            "replicas": pool.replicas,
            "update_config": {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"},
            "rollback_config": {"parallelism": 1, "order": "stop-first"},
            "restart_policy": {"condition": "any", "delay": "5s"},
        },
    }


def render_stack(
    settings: Settings,
    image: str,
    secret_file: Path,
    secret_name: str,
    config_name: str,
    log_format: str = "json",
    tls_names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The stack file: one service per declared pool (pure). With broker.tls, each of its files is a secret
    too (`tls_names`: env var -> the secret's content name), at the path its $BROKER_TLS_* names."""
    check_no_devices(settings)
    tls = container_tls_files(settings)
    tls_names = tls_names or {}
    return {
        "version": "3.8",
        "services": {pool.name: service(settings, pool, image, log_format, tls) for pool in settings.pools.values()},
        "secrets": {
            SECRET: {"name": secret_name, "file": str(secret_file)},
            **{env.lower(): {"name": tls_names.get(env, env.lower()), "file": host} for env, host, _ in tls},
        },
        "configs": {CONFIG: {"name": config_name, "file": str(settings.path)}},
    }


def check_no_devices(settings: Settings) -> None:
    """CliError (exit 2) for a pool with devices: a swarm service cannot have one (`docker service create` has
    no --device, and `docker stack deploy` drops a service's `devices:` with a mere notice)."""
    for pool in settings.pools.values():
        if pool.devices:
            raise CliError(
                f"pools.{pool.name}.devices: swarm services cannot be given devices (docker service create has no "
                f"--device): run this pool on the compose engine, or drop its devices from {settings.path.name}",
                ExitCode.USAGE,
            )


def _docker(*args: str, timeout: float = DOCKER_TIMEOUT, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise CliError(f"`docker {' '.join(args[:3])}` failed: {last[0]}")
    return proc


def swarm_state() -> str:
    """This engine's swarm membership: inactive, pending, active, error, locked."""
    return _docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() or "unknown"


class SwarmEngine(Engine):
    """Workers as tasks of swarm services, one service per pool, in one stack."""

    name = "swarm"
    cli_options = (
        Option(
            "--init-swarm",
            help="--engine swarm: make this Docker engine a single-node swarm if it is in none",
            refusal="--init-swarm needs the swarm engine (this run uses {engine}): add --engine swarm",
            commands=("up",),
        ),
    )
    cli_commands: ClassVar[dict[str, str]] = {"stack": "write the swarm stack file rendered from the pools"}
    needs_docker = True
    needs_image = True
    deploy_args = ("--init-swarm",)

    def __init__(
        self,
        settings: Settings,
        app,
        stack: str | None = None,
        env: dict[str, str] | None = None,
        run_dir: Path | None = None,
        init_swarm: bool = False,
    ):
        self.settings, self.app, self.init_swarm = settings, app, init_swarm
        self.folder = project_dir(settings)
        self.stack = stack or os.environ.get("DTS_STACK") or project_name(self.folder)
        self.env = {**os.environ, **(env or {})}
        self.image = worker_image(self.folder, self.env, settings.code)  # $DTS_IMAGE, else the project's own
        folder = Path(run_dir or project_run_dir(self.folder)) / "swarm"
        self.stack_file = folder / f"{self.stack}.stack.yml"
        self.secret_file = folder / f"{self.stack}.broker-url"  # mode 0600, git-ignored like .env

    # ----------------------------------------------------------------------- rendering

    def broker_url(self) -> str:
        """The workers' broker URL: the dedicated vhost/user of .env (or the engine's env), at $DTS_BROKER_HOST
        (a broker on another host, for a swarm of many nodes), else at the host of each node."""
        env = {**read_env_file(env_file(self.folder)), **self.env}
        host = env.get("DTS_BROKER_HOST") or CONTAINER_BROKER_HOST
        url = broker_url_from_env_file(env, host=host, tls=self.settings.broker.tls is not None)
        if url is None:
            raise CliError(
                "no broker user for the containers (guest only works over loopback): run `make broker` "
                "to create one and write it to .env",
                ExitCode.USAGE,
            )
        return url

    def write_stack_file(self) -> Path:
        """Write the secret file and the stack file for the current settings (atomically); returns the latter."""
        self.stack_file.parent.mkdir(parents=True, exist_ok=True)
        secret = self.broker_url().encode()
        write_atomic(self.secret_file, secret, mode=0o600)
        tls_names = {
            env: content_name(self.stack, env.lower(), Path(host).read_bytes())
            for env, host, _ in container_tls_files(self.settings)
        }
        doc = render_stack(
            self.settings,
            self.image,
            self.secret_file,
            content_name(self.stack, SECRET, secret),
            content_name(self.stack, "config", self.settings.path.read_bytes()),
            self.env.get("LOG_FORMAT") or "json",
            tls_names,
        )
        text = f"# Rendered from the pools in {self.settings.path} by dts.engines.swarm; do not edit.\n"
        text += f"# {self.deploy_command()}\n"
        text += yaml.safe_dump(doc, sort_keys=False)
        write_atomic(self.stack_file, text)
        return self.stack_file

    def deploy_command(self) -> str:
        return f"docker stack deploy -c {self.stack_file} --resolve-image never {self.stack}"

    def run_command(self, command: str) -> list[str]:
        """`stack`: the stack file and how to deploy it."""
        path, use = self.render()
        return [shown(path), f"use: {use}"]

    def render(self) -> tuple[Path, str]:
        """The stack file (and its secret file), and how to deploy it."""
        return self.write_stack_file(), self.deploy_command()

    # ----------------------------------------------------------------------- the swarm and its services

    def ensure_swarm(self) -> None:
        """This engine is a swarm manager; with init_swarm, an inactive one becomes a single-node swarm."""
        state = swarm_state()
        if state == "active":
            if _docker("info", "--format", "{{.Swarm.ControlAvailable}}").stdout.strip() != "true":
                raise CliError(
                    "this Docker engine is a swarm worker, not a manager: deploy from a manager node", ExitCode.USAGE
                )
            return
        if state != "inactive" or not self.init_swarm:
            raise CliError(
                f"this Docker engine is not in a swarm (state {state}): run `make deploy ENGINE=swarm` "
                "(makes a single-node swarm) or `docker swarm init`",
                ExitCode.USAGE,
            )
        _docker(*INIT_ARGV[1:], check=True)
        log.warning(
            "made this Docker engine a single-node swarm (%s); `docker swarm leave --force` undoes it",
            " ".join(INIT_ARGV),
        )

    def service(self, pool: str) -> str:
        return f"{self.stack}_{pool}"

    def services(self) -> dict[str, str]:
        """{service name: 'running/desired'} of this stack (empty when there is no swarm or no stack)."""
        label = f"label={NAMESPACE_LABEL}={self.stack}"
        proc = _docker("service", "ls", "--filter", label, "--format", "{{.Name}} {{.Replicas}}")
        return (
            dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line) if proc.returncode == 0 else {}
        )

    def tasks(self, pool: str) -> dict[str, str]:
        """{node name: task id} of the pool's live tasks; the node's host part is its container's
        hostname, which swarm sets to the container id's first 12 characters."""
        proc = _docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", self.service(pool))
        ids = proc.stdout.split() if proc.returncode == 0 else []
        if not ids:
            return {}
        fmt = "{{.ID}} {{.Status.State}} {{.Status.ContainerStatus.ContainerID}}"
        found = {}
        for line in _docker("inspect", "--format", fmt, *ids).stdout.splitlines():
            task, state, container = [*line.split(), "", "", ""][:3]
            if state in LIVE_STATES and container:
                found[nodename(pool, container[:12])] = task
        return found

    def workers(self) -> dict[str, list[str]]:
        if not self.services():
            return {pool: [] for pool in self.settings.pools}
        return {pool: sorted(self.tasks(pool)) for pool in self.settings.pools}

    def _task_alive(self, task: str) -> bool:
        state = _docker("inspect", "--format", "{{.DesiredState}} {{.Status.State}}", task).stdout.split()
        return len(state) == 2 and state[0] == "running" and state[1] in LIVE_STATES

    def _wait_for_workers(self, sizes: dict[str, int]) -> None:
        """Each pool has its size in live tasks, each of their workers answers ping and the pool's queues
        have that many consumers; CliError when that takes longer than engine.start_timeout."""
        deadline = time.monotonic() + self.settings.engine.start_timeout
        while True:
            found = {pool: self.tasks(pool) for pool in sizes}
            short = {pool: len(found[pool]) for pool in sizes if len(found[pool]) != sizes[pool]}
            if not short:
                break
            if time.monotonic() > deadline:
                pool, have = next(iter(short.items()))
                raise CliError(
                    f"{pool}: swarm runs {have} task(s), expected {sizes[pool]}; see `docker service ps "
                    f"{self.service(pool)}` or raise engine.start_timeout"
                )
            time.sleep(0.5)  # polling the swarm for a condition, bounded by the deadline
        tasks = {name: task for pool in sizes for name, task in found[pool].items()}

        def last_words(name: str) -> str:
            return _docker("service", "logs", "--raw", "--tail", "1", tasks[name]).stdout.strip()[-300:]

        wait_for_pong(
            self.app, list(tasks), deadline, alive=lambda name: self._task_alive(tasks[name]), last_words=last_words
        )
        queues = {q: sizes[pool] for pool in sizes for q in self.settings.pools[pool].queues}
        while True:
            stats = queue_stats(self.app, list(queues), Deadline.after(self.settings.broker.connect_timeout))
            wrong = [q for q, n in queues.items() if stats[q].consumers != n]
            if not wrong:
                return
            if time.monotonic() > deadline:
                q = wrong[0]
                raise CliError(
                    f"{q} has {stats[q].consumers} consumer(s), expected {queues[q]} from pool "
                    f"{self.settings.pool_for_queue(q).name}; see `make logs ENGINE=swarm`"
                )
            time.sleep(0.2)  # polling the broker for a condition, bounded by the deadline

    # ----------------------------------------------------------------------- the Engine interface

    def deploy(self) -> None:
        """`docker stack deploy` of the rendered stack (services at their declared replicas); no waiting."""
        self.ensure_swarm()
        if "/" not in self.image and _docker("image", "inspect", self.image).returncode != 0:  # a registry: pulled
            log.warning(
                "image %s is not on this node: build it (`make build`) or push it to a registry the "
                "nodes can pull from and set DTS_IMAGE",
                self.image,
            )
        path = self.write_stack_file()
        log.info("docker stack deploy -c %s %s", path, self.stack)
        argv = ["stack", "deploy", "-c", str(path), "--resolve-image", "never", "--prune", self.stack]
        _docker(*argv, timeout=300, check=True)

    def start(self) -> dict[str, int]:
        before = replicas(self)
        self.deploy()
        sizes = declared_sizes(self.settings)
        self._wait_for_workers(sizes)
        return scale_plan(before, sizes)

    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        """`docker service scale` in one call for every named pool (deploying the stack first when it is not
        there); on the way down swarm sends SIGTERM and waits stop_grace_period: a warm shutdown."""
        check_sizes(desired, self.settings)
        check_no_devices(self.settings)
        missing = [pool for pool in self.settings.pools if self.service(pool) not in self.services()]
        if missing:
            self.deploy()
        plan = scale_plan(replicas(self), desired)
        scales = [f"{self.service(pool)}={count}" for pool, count in desired.items()]
        timeout = self.settings.engine.start_timeout + self.settings.engine.stop_timeout + 60
        _docker("service", "scale", "--detach=false", *scales, timeout=timeout, check=True)
        self._wait_for_workers(desired)
        return plan

    def stop(self, volumes: bool = False) -> dict[str, int]:
        """`docker stack rm`, then wait until no service, container, network, secret or config of the stack
        is left (each carries the label com.docker.stack.namespace=<stack>)."""
        before = replicas(self)
        if swarm_state() != "active" or not self.leftovers():
            return {pool: -count for pool, count in before.items()}
        # not checked: a second `stack rm` while the first one's network removal is under way fails with
        # "network ... not found"; what counts is that nothing is left, polled below
        removing = _docker("stack", "rm", self.stack)
        said = (removing.stderr or removing.stdout).strip()
        deadline = time.monotonic() + self.settings.engine.stop_timeout + REMOVE_GRACE
        while left := self.leftovers():
            if time.monotonic() > deadline:
                raise CliError(
                    f"`docker stack rm {self.stack}` left {', '.join(left[:4])} behind ({said[-200:]}); "
                    "see `docker ps -a` and `docker network ls`"
                )
            time.sleep(0.5)  # polling docker for a condition, bounded by the deadline
        return {pool: -count for pool, count in before.items()}

    def status_lines(self) -> list[str]:
        """The swarm's own count: running/desired tasks per service, and each pool's live tasks per node."""
        services = ", ".join(f"{name} {count}" for name, count in sorted(self.services().items()))
        lines = [f"swarm stack {self.stack}: " + (services or "not deployed")]
        for pool in self.settings.pools if services else ():
            where = self.nodes_of(pool)
            if where:
                lines.append(f"  {pool} per node: " + ", ".join(f"{node} {n}" for node, n in sorted(where.items())))
        return lines

    def nodes_of(self, pool: str) -> dict[str, int]:
        """{swarm node's host name: the pool's tasks running there} (docker service ps)."""
        fmt = "{{.Node}} {{.CurrentState}}"
        proc = _docker("service", "ps", "--filter", "desired-state=running", "--format", fmt, self.service(pool))
        counts: dict[str, int] = {}
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            node, _, state = line.partition(" ")
            if node and state.startswith(("Running", "Starting")):
                counts[node] = counts.get(node, 0) + 1
        return counts

    def leftovers(self) -> list[str]:
        """What of the stack still exists on this node: 'service x', 'container y', ..."""
        label = f"label={NAMESPACE_LABEL}={self.stack}"
        left = []
        kinds = {
            "service": ["service", "ls"],
            "container": ["ps", "-a"],
            "network": ["network", "ls"],
            "secret": ["secret", "ls"],
            "config": ["config", "ls"],
        }
        for kind, argv in kinds.items():
            proc = _docker(*argv, "-q", "--filter", label)
            left += [f"{kind} {ident[:12]}" for ident in proc.stdout.split()] if proc.returncode == 0 else []
        return left

    def logs(self, lines: int, follow: bool) -> None:
        follow_arg = ["-f"] if follow else []
        procs = [
            subprocess.Popen(["docker", "service", "logs", "--tail", str(lines), *follow_arg, self.service(pool)])
            for pool in self.settings.pools
        ]
        for proc in procs:
            proc.wait()
