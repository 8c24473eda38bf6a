"""Engines: where a pool's workers run. One small interface, one class per engine (dts.local, dts.compose,
dts.swarm).

    engine = make_engine(settings, "auto")   # compose when a Docker engine answers, else local processes
    engine.resize({"worker-a": 3})          # returns when the new workers answer ping
    engine.workers()                        # {"worker-a": ["worker-a@host-1", ...], "worker-b": [...]}

A third engine is a new class with these methods and one line in `make_engine`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Protocol

from dts.config import TLS_ENV, Settings
from dts.errors import CliError, ExitCode

TLS_DIR_IN_CONTAINER = "/run/secrets"  # where a container finds broker.tls's files (swarm's secrets go there too)


def container_tls_files(settings: Settings) -> list[tuple[str, str, str]]:
    """broker.tls's files as a container engine delivers them: (env var, file on the host, path in the
    container) for each file set; the worker reads the path from the env var ($BROKER_TLS_CA_FILE, ...),
    which overrides the host path in the mounted config. Empty without broker.tls (pure)."""
    tls = settings.broker.tls
    if tls is None:
        return []
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    return [(TLS_ENV[key], host, f"{TLS_DIR_IN_CONTAINER}/dts_tls_{key}.pem")
            for key, host in files.items() if host]  # fmt: skip


class Engine(Protocol):
    name: str  # "local", "compose", ...

    def workers(self) -> dict[str, list[str]]:
        """Node names of the running workers, per declared pool."""

    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        """Bring each named pool to its size (warm shutdown on the way down); the change per pool."""

    def start(self) -> dict[str, int]:
        """Every pool at its declared replicas."""

    def stop(self) -> dict[str, int]:
        """Every worker stopped (warm shutdown within engine.stop_timeout)."""

    def logs(self, lines: int, follow: bool) -> None:
        """Print (or follow) the workers' logs."""


def replicas(engine: Engine) -> dict[str, int]:
    return {pool: len(nodes) for pool, nodes in engine.workers().items()}


def declared_sizes(settings: Settings) -> dict[str, int]:
    return {name: pool.replicas for name, pool in settings.pools.items()}


# --------------------------------------------------------------------------- pure plan


def scale_plan(current: dict[str, int], desired: dict[str, int]) -> dict[str, int]:
    """Workers to add (>0) or remove (<0) per pool: desired - current, for the pools named in desired."""
    return {pool: count - current.get(pool, 0) for pool, count in desired.items()}


def indices_to_start(existing: set[int], count: int) -> list[int]:
    """Lowest free worker indices (1-based) so that `count` workers exist."""
    free = (i for i in range(1, count + len(existing) + 1) if i not in existing)
    return [next(free) for _ in range(max(0, count - len(existing)))]


def indices_to_stop(existing: set[int], count: int) -> list[int]:
    """Highest indices first, so that `count` workers remain."""
    return sorted(existing, reverse=True)[: max(0, len(existing) - count)]


def check_sizes(desired: dict[str, int], settings: Settings) -> None:
    """CliError(exit 2) for an undeclared pool or a size outside 0..engine.max_replicas."""
    limit = settings.engine.max_replicas
    for pool, count in desired.items():
        if pool not in settings.pools:
            raise CliError(f"unknown pool {pool!r}: {settings.path.name} declares {', '.join(settings.pools)}",
                           ExitCode.USAGE)  # fmt: skip
        if not 0 <= count <= limit:
            raise CliError(f"{pool}: COUNT must be between 0 and engine.max_replicas={limit} (got {count}); "
                           f"raise engine.max_replicas in {settings.path.name} for more", ExitCode.USAGE)  # fmt: skip


# --------------------------------------------------------------------------- waiting for workers


RECONNECT_PAUSE = 0.25  # seconds between two pings while the broker connection is lost


def wait_for_pong(app, names: list[str], deadline: float, alive: Callable[[str], bool] = lambda name: True,
                  last_words: Callable[[str], str] = lambda name: "") -> None:  # fmt: skip
    """Poll `celery inspect ping` until every node in `names` answered, `alive` says one died, or the
    deadline passes (CliError). `last_words(name)` is the dead worker's last log line, for the error."""
    probe = app.connection_for_read()
    lost = (OSError, *probe.connection_errors, *probe.channel_errors)
    probe.release()
    waiting = set(names)
    while waiting:
        try:
            replies = app.control.ping(destination=sorted(waiting), timeout=0.5) or []
        except lost as exc:  # a stale pooled connection (broker restarted), or the broker is away
            if time.monotonic() > deadline:  # away for good: one line, exit 3
                from dts.broker import broker_error

                raise broker_error(app.conf.broker_url, exc) from None
            time.sleep(RECONNECT_PAUSE)  # the next ping reconnects; pacing it, under the deadline
            continue
        for reply in replies:
            waiting -= set(reply)
        dead = [name for name in waiting if not alive(name)]
        if dead:
            said = last_words(dead[0])
            raise CliError(f"worker {dead[0]} exited during start-up" + (f" ({said})" if said else "")
                           + "; see `make logs`")  # fmt: skip
        if waiting and time.monotonic() > deadline:
            raise CliError(f"{len(waiting)} worker(s) did not answer ping in time ({', '.join(sorted(waiting))}); "
                           "see `make logs`, or raise engine.start_timeout")  # fmt: skip


# --------------------------------------------------------------------------- choosing an engine


def quiet(argv: list[str], timeout: float = 10) -> bool:
    """True when the command exits 0 within `timeout`."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_answers(timeout: float = 10) -> bool:
    return bool(shutil.which("docker")) and quiet(["docker", "info"], timeout)


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when the plugin exists, else `docker-compose` (v1.29), else None."""
    if shutil.which("docker") and quiet(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def resolve_engine(name: str) -> str:
    """auto -> compose when a Docker engine answers and compose is installed, else local (never swarm:
    a swarm is asked for by name)."""
    if name != "auto":
        return name
    return "compose" if docker_answers() and compose_command() else "local"


def make_engine(settings: Settings, name: str | None = None, app=None, **options) -> Engine:
    """The engine `name` (default: engine.name from the config) for these settings."""
    from dts.compose import ComposeEngine
    from dts.local import LocalEngine
    from dts.swarm import SwarmEngine

    if app is None:
        from celery_app import app
    resolved = resolve_engine(name or settings.engine.name)
    if resolved in ("compose", "swarm") and not docker_answers():
        raise CliError("no Docker engine answers (`docker info` failed): start one, or use ENGINE=local",
                       ExitCode.USAGE)  # fmt: skip
    if resolved == "swarm":
        return SwarmEngine(settings, app, **options)
    if resolved == "compose":
        return ComposeEngine(settings, app, **options)
    return LocalEngine(settings, app, **options)


def engines_in_use(engine: Engine, settings: Settings, requested: str | None) -> list[Engine]:
    """The chosen engine, plus local processes when `auto` chose compose: workers started before a
    Docker engine was installed still show in status and stop on down."""
    if (requested or settings.engine.name) == "auto" and engine.name != "local":
        return [engine, make_engine(settings, "local", app=getattr(engine, "app", None))]
    return [engine]
