"""The engine interface: what every engine (dts.engines.local, compose, swarm, and the tests' stub) answers,
with the pure scale plan and size checks they share, and the wait for new workers to answer ping.

    engine = make_engine(settings, "auto", app)   # dts.engines: compose when Docker answers, else local
    engine.resize({"worker-a": 3})              # returns when the new workers answer ping
    engine.workers()                            # {"worker-a": ["worker-a@host-1", ...], "worker-b": [...]}

A new engine is one subclass of Engine in its own module and one line in dts.engines.registry; its
command-line options (`Option`) and extra sub-commands (`cli_commands`) are declared on the class, and the
pool commands' parsers are built from the registry (dts.cli.pools), so an engine's option is its own.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dts.config import Settings
from dts.errors import CliError, ExitCode
from dts.reports.status_report import NodeStatus


@dataclass(frozen=True)
class Option:
    """A command-line option of one engine: `--flag` on the pool commands it names (None: every one), passed
    to the engine's constructor as the keyword `dest` when given; `refusal` is the one line when another
    engine is asked for it ({engine}: the engine that run uses)."""

    flag: str
    help: str
    refusal: str
    commands: tuple[str, ...] | None = None  # scale.py's names: "up", "down", "set", "status", ...
    choices: tuple[str, ...] | None = None  # a value among these (default: the first); else a switch

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def default(self) -> Any:
        return self.choices[0] if self.choices else False

    def argparse_kwargs(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": self.choices, "default": self.default, "help": self.help}
        return {"action": "store_true", "help": self.help}


class Engine(abc.ABC):
    """Where a pool's workers run. Subclasses set `name`, implement workers/resize/stop/logs and override
    the rest where they have more to do; the defaults are what an engine without that feature does."""

    name: ClassVar[str]  # "local", "compose", ...
    cli_options: ClassVar[tuple[Option, ...]] = ()  # its own command-line options, passed to its constructor
    # its own sub-commands beyond the pool commands every engine answers: name -> help (`run_command` runs them)
    cli_commands: ClassVar[dict[str, str]] = {}
    needs_docker: ClassVar[bool] = False  # make_engine refuses it (exit 2) when no Docker engine answers
    serves_flower: ClassVar[bool] = False  # `dts flower --engine NAME`: it runs Flower as a service of its own
    needs_image: ClassVar[bool] = False  # `dts up` / `make up` / `make deploy` build the worker image first
    deploy_args: ClassVar[tuple[str, ...]] = ()  # what `make deploy` adds to `scale.py up` (swarm: --init-swarm)

    settings: Settings
    app: Any  # the Celery app its workers answer ping through

    @classmethod
    def option(cls, dest: str) -> Option | None:
        return next((o for o in cls.cli_options if o.dest == dest), None)

    @abc.abstractmethod
    def workers(self) -> dict[str, list[str]]:
        """Node names of the running workers, per declared pool."""

    @abc.abstractmethod
    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        """Bring each named pool to its size (warm shutdown on the way down); the change per pool."""

    def start(self) -> dict[str, int]:
        """Every pool at its declared replicas."""
        return self.resize(declared_sizes(self.settings))

    @abc.abstractmethod
    def stop(self, volumes: bool = False) -> dict[str, int]:
        """Every worker stopped (warm shutdown within engine.stop_timeout); with `volumes` the data of what
        the engine ran beside them (the compose broker's volume) too."""

    @abc.abstractmethod
    def logs(self, lines: int, follow: bool) -> None:
        """Print (or follow) the workers' logs."""

    def run_command(self, command: str) -> list[str]:
        """Run one of `cli_commands`; the lines to print."""
        raise CliError(f"the {self.name} engine has no command {command!r}", ExitCode.USAGE)

    def prepare(self) -> None:  # noqa: B027 - a hook: most engines need nothing before the broker is asked
        """What must run before the broker is asked (the compose `broker` service); nothing by default."""

    def start_flower(self, port: int) -> str:
        """Start the engine's Flower service on 127.0.0.1:`port`, answering; where it is, in words."""
        raise CliError(f"the {self.name} engine runs no Flower: `dts flower` runs one here", ExitCode.USAGE)

    def render(self) -> tuple[Path, str]:
        """Write this engine's deployment file: (its path, how to use it), for the engines that have one."""
        raise CliError(f"the {self.name} engine renders no deployment file", ExitCode.USAGE)

    def status_lines(self) -> list[str]:
        """The engine's own view below the status table (the swarm's running/desired tasks); none by default."""
        return []

    def broker_nodes(self) -> list[NodeStatus]:
        """The broker cluster's nodes as the cluster itself sees them, when this engine runs them (compose's
        `cluster` profile); none by default (then status asks each failover URL)."""
        return []

    def stopped_lines(self, volumes: bool) -> list[str]:
        """What stop() removed beside the workers, in words (the compose broker container); none by default."""
        return []


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
            raise CliError(
                f"unknown pool {pool!r}: {settings.path.name} declares {', '.join(settings.pools)}", ExitCode.USAGE
            )
        if not 0 <= count <= limit:
            raise CliError(
                f"{pool}: COUNT must be between 0 and engine.max_replicas={limit} (got {count}); "
                f"raise engine.max_replicas in {settings.path.name} for more",
                ExitCode.USAGE,
            )


# --------------------------------------------------------------------------- waiting for workers


RECONNECT_PAUSE = 0.25  # seconds between two pings while the broker connection is lost
PING_BOUND = 2.0  # seconds one ping round (connect, ask, replies) may take


def wait_for_pong(
    app,
    names: list[str],
    deadline: float,
    alive: Callable[[str], bool] = lambda name: True,
    last_words: Callable[[str], str] = lambda name: "",
) -> None:
    """Ping until every node in `names` answered, `alive` says one died, or the deadline passes (CliError).
    `last_words(name)` is the dead worker's last log line, for the error."""
    from dts.amqp.checks import LOST, broker_error  # kombu: not loaded for scale.py's refusals
    from dts.amqp.control import ask_workers
    from dts.amqp.deadline import Deadline, session

    waiting = set(names)
    while waiting:
        ask = Deadline.after(PING_BOUND)
        try:
            with session(app, ask) as conn:
                waiting -= set(ask_workers(app, conn, "ping", ask, destination=sorted(waiting), wait=0.5))
        except LOST as exc:  # the broker is away, restarting or silent
            if time.monotonic() > deadline:  # away for good: one line, exit 3
                raise broker_error(app.conf.broker_url, exc) from None
            time.sleep(RECONNECT_PAUSE)  # pacing the next attempt, under the deadline
            continue
        dead = [name for name in waiting if not alive(name)]
        if dead:
            said = last_words(dead[0])
            raise CliError(
                f"worker {dead[0]} exited during start-up" + (f" ({said})" if said else "") + "; see `dts logs`"
            )
        if waiting and time.monotonic() > deadline:
            raise CliError(
                f"{len(waiting)} worker(s) did not answer ping in time ({', '.join(sorted(waiting))}); "
                "see `dts logs`, or raise engine.start_timeout"
            )
