"""Real workers for tests and benchmarks: the one helper that starts, yields and stops them (like celery's
`celery.contrib.testing.worker.start_worker`, but real `celery worker` processes of the local engine).

    with local_workers(settings, app, run_dir) as engine:   # every pool at its replicas, answering ping
        ...                                                  # engine.workers(), engine.resize({...})
    # stopped (warm shutdown), also when the body raised

    with compose_cluster(settings, run_dir, project, vhost) as cluster:        # three RabbitMQ nodes
        ...                                                  # cluster.url, cluster.env, cluster.engine
    # removed with their volumes
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dts.config import Settings
from dts.engines.local import LocalEngine

if TYPE_CHECKING:
    from dts.engines.compose import ComposeEngine


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Clean-up that a second Ctrl-C must not cut short (SIGINT ignored meanwhile, in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def local_workers(settings: Settings, app, run_dir: Path) -> Iterator[LocalEngine]:
    """Every pool of `settings` at its declared replicas as local `celery worker` processes (supervised
    from `run_dir`), yielded as their engine once each answers ping; stopped afterwards. A start that
    fails part way stops what did start, then raises (CliError)."""
    engine = LocalEngine(settings, app, run_dir=run_dir)
    try:
        engine.start()
        yield engine
    finally:
        with uninterrupted():
            engine.stop()


@dataclass(frozen=True)
class Cluster:
    """A compose `cluster` profile of its own (see compose_cluster)."""

    url: str  # the three nodes' failover URLs on 127.0.0.1, the vhost and user made for it
    env: dict[str, str]  # what the CLIs and compose need to reach it (credentials, ports, project, run folder)
    engine: ComposeEngine  # its compose project (broker="cluster"): broker_nodes(), _wait_healthy()


@contextlib.contextmanager
def compose_cluster(
    settings: Settings, run_dir: Path, project: str, vhost: str, rabbitmq: str | None = None
) -> Iterator[Cluster]:
    """A three-node RabbitMQ cluster (the compose `cluster` profile) in a compose project, vhost, user, host
    ports and run folder (its Erlang cookie) of its own, yielded once every node is healthy and joined;
    removed afterwards with its volumes. For the cluster's tests and benchmark: nothing of a user's is used.
    `rabbitmq`: the nodes' RabbitMQ line (3.10, 4.0, 4.3: its broker image, built first), else the default."""
    from dts.engines.compose import CLUSTER_SERVICES, ComposeEngine
    from dts.engines.image import DEFAULT_RABBITMQ

    (run_dir / "cluster").mkdir(mode=0o700, parents=True, exist_ok=True)
    cookie = run_dir / "cluster" / "erlang.cookie"
    cookie.write_text(secrets.token_hex(20))
    cookie.chmod(0o644)  # read through the bind mount by the nodes' unprivileged user
    ports = [free_port() for _ in CLUSTER_SERVICES]
    password = secrets.token_hex(12)
    url = ";".join(f"amqp://{vhost}:{password}@127.0.0.1:{port}/{vhost}" for port in ports)
    env = {
        "DTS_BROKER_USER": vhost,
        "DTS_BROKER_PASSWORD": password,
        "DTS_BROKER_VHOST": vhost,
        **{f"DTS_CLUSTER_PORT_{n}": str(port) for n, port in enumerate(ports, 1)},
        "DTS_RUN_DIR": str(run_dir),
        "COMPOSE_PROJECT_NAME": project,
        "BROKER_URL": url,
    }
    engine = ComposeEngine(
        settings.with_broker_url(url),
        None,
        project=project,
        env=env,
        run_dir=run_dir,
        broker="cluster",
        rabbitmq=rabbitmq or DEFAULT_RABBITMQ,
    )
    try:
        engine.prepare()  # the three nodes up, joined, the vhost and user made
        yield Cluster(url, env, engine)
    finally:
        with uninterrupted():
            engine.stop(volumes=True)


def free_port() -> int:
    """A TCP port nobody listens on at the moment (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
