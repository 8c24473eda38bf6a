"""The engines: where a pool's workers run. This package's root is the factory over the registry
(dts.engines.registry: an engine's name -> the dotted path of its class, resolved on use, as celery's
`celery.concurrency` does); the interface and what engines share are in dts.engines.base, each engine in a
module of its own.

    make_engine(settings, "auto", app)               # compose when a Docker engine answers, else local
    make_engine(settings, None, app)                 # engine.name; for auto, the engine `up` last used here
    make_engine(settings, "swarm", app, init_swarm=True)
    register("stub", "dts.engines.stub:StubEngine")  # a new engine: its module plus one line (dts.engines.registry)

Engine modules import dts.engines.base and the shared helpers (containers, docker; local its supervise):
never each other, never this package's root. dts.k8s renders manifests and is no engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dts.engines.registry import AUTO, ENGINES, names, register
from dts.errors import CliError, ExitCode

if TYPE_CHECKING:
    from dts.config import Settings
    from dts.engines.base import Engine, Option


def resolve_engine(name: str) -> str:
    """auto -> compose when a Docker engine answers and compose is installed, else local (never swarm:
    a swarm is asked for by name)."""
    if name != AUTO:
        return name
    from dts.engines.docker import compose_command, docker_answers  # subprocess: not for the config's import

    return "compose" if docker_answers() and compose_command() else "local"


def engine_class(name: str) -> type[Engine]:
    """The class registered as `name` (imported on first use)."""
    from kombu.utils.imports import symbol_by_name  # kombu: not loaded by the config or scale.py's refusals

    if name not in ENGINES:
        raise CliError(f"unknown engine {name!r}: choose from {', '.join(names())}", ExitCode.USAGE)
    return symbol_by_name(ENGINES[name])


def engine_classes() -> dict[str, type[Engine]]:
    """Every registered engine's class, by name (imported: what the command line is built from)."""
    return {name: engine_class(name) for name in ENGINES}


def cli_options() -> list[Option]:
    """Every registered engine's own command-line options, each flag once (the first engine's)."""
    found: dict[str, Option] = {}
    for cls in engine_classes().values():
        for option in cls.cli_options:
            found.setdefault(option.flag, option)
    return list(found.values())


def cli_commands() -> dict[str, str]:
    """Every registered engine's own sub-commands: name -> help (the first engine's words)."""
    found: dict[str, str] = {}
    for cls in engine_classes().values():
        for command, words in cls.cli_commands.items():
            found.setdefault(command, words)
    return found


def engines_with_command(command: str) -> list[str]:
    return [name for name, cls in engine_classes().items() if command in cls.cli_commands]


def refusal(option: str, engine: str) -> str:
    """Why `engine` does not take `option` (a dest): the words of the engine that does, else a plain line."""
    for cls in engine_classes().values():
        declared = cls.option(option)
        if declared:
            return declared.refusal.format(engine=engine)
    return f"the {engine} engine takes no option {option!r}"


UP_RECORD = "engine"  # in the project's run folder: the engine `up` last started the pools on


def remember_engine(run_dir: Path, name: str | None) -> None:
    """Note (None: forget) the engine `up` started the pools on, so that a later command that names none
    (`dts scale worker-a 2` after `dts up --engine local`) acts on the same workers, not on `auto`'s pick."""
    record = Path(run_dir) / UP_RECORD
    if name is None:
        record.unlink(missing_ok=True)
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(name + "\n")


def remembered_engine(run_dir: Path) -> str | None:
    """The engine `up` last started the pools on (None: none noted, or no longer a known engine)."""
    try:
        name = (Path(run_dir) / UP_RECORD).read_text().strip()
    except OSError:
        return None
    return name if name in ENGINES else None


def chosen_engine(settings: Settings, name: str | None) -> str:
    """`name`, else engine.name; for `auto`, the engine `up` last started the pools on, else auto's pick."""
    from dts.config import project_dir, run_dir

    wanted = name or settings.engine.name
    if wanted == AUTO:
        wanted = remembered_engine(run_dir(project_dir(settings))) or AUTO
    return resolve_engine(wanted)


def engine_reason(settings: Settings, name: str | None) -> str:
    """Why the engine chosen_engine picks is the one: what the command line, the config or `dts up` said,
    or what `auto` found."""
    from dts.config import project_dir, run_dir

    if name and name != AUTO:
        return "asked for on the command line"
    if not name and settings.engine.name != AUTO:
        return f"engine.name in {settings.path.name}"
    if remembered_engine(run_dir(project_dir(settings))):
        return "the one `dts up` started the pools on"
    return f"auto: {'a Docker engine answers' if resolve_engine(AUTO) == 'compose' else 'no Docker engine answers'}"


def refuse_a_second_engine(settings: Settings, name: str | None) -> None:
    """CliError (exit 2) when the command line asks for another engine than the one `dts up` started the
    pools on: starting workers there would run the pools on two engines at once."""
    from dts.config import project_dir, run_dir

    running = remembered_engine(run_dir(project_dir(settings)))
    if name and name != AUTO and running and resolve_engine(name) != running:
        raise CliError(
            f"the pools run on the {running} engine (`dts up` started them there), not {name}: run `dts down` "
            f"first to move them, then `dts up --engine {name}`; or leave --engine (ENGINE=) out",
            ExitCode.USAGE,
        )


def make_engine(settings: Settings, name: str | None, app, **options) -> Engine:
    """The engine `name` (None: engine.name from the config; for auto, the engine `up` last used) for these
    settings, with its options; an option it does not take, or a Docker engine it needs and does not find,
    is a one-line exit 2."""
    resolved = chosen_engine(settings, name)
    cls = engine_class(resolved)
    for option in options:
        if cls.option(option) is None:
            raise CliError(refusal(option, resolved), ExitCode.USAGE)
    from dts.engines.docker import docker_answers

    if cls.needs_docker and not docker_answers():
        raise CliError(
            "no Docker engine answers (`docker info` failed): start one, or use ENGINE=local", ExitCode.USAGE
        )
    return cls(settings, app, **options)


def engines_in_use(engine: Engine, settings: Settings, requested: str | None) -> list[Engine]:
    """The chosen engine, plus local processes when `auto` chose another: workers started before a
    Docker engine was installed still show in status and stop on down."""
    if (requested or settings.engine.name) == AUTO and engine.name != "local":
        return [engine, make_engine(settings, "local", engine.app)]
    return [engine]


__all__ = [
    "AUTO",
    "ENGINES",
    "chosen_engine",
    "cli_commands",
    "cli_options",
    "engine_class",
    "engine_classes",
    "engine_reason",
    "engines_with_command",
    "make_engine",
    "names",
    "refuse_a_second_engine",
    "register",
    "resolve_engine",
]
