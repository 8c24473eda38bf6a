"""The pool commands (`dts up`, `down`, `scale`, `status`, `health`, `logs`, `autoscale`, ...): start, stop,
resize and inspect the worker pools on their engine.

In this repository they are also `python scale.py COMMAND` (scale.py's names: set, all, auto for scale,
scale-all, autoscale); the engines' own commands (build, compose, stack) come from the registry.

python scale.py up                  # every pool at its declared replicas; waits for ping
python scale.py set worker-a 3      # resize one pool (a queue name works too: set queue_a 3)
python scale.py status              # per pool: workers, slots, consumers and queue depth
python scale.py status --watch      # the same table every second, with tasks/s, until Ctrl-C
python scale.py health              # broker, each queue's consumers and depth, each worker's ping; exit 0/3/4
python scale.py down                # warm shutdown of every worker
python scale.py k8s                 # write Kubernetes (+KEDA) manifests rendered from the pools to deploy/k8s/
python scale.py auto                # resize the autoscaled pools on their queue depth until Ctrl-C
python scale.py engine              # the engine `auto` picks here (compose if Docker answers, else local)
python scale.py up --engine swarm --init-swarm   # deploy the swarm stack (single-node swarm if none)
python scale.py up --engine compose --broker compose   # RabbitMQ as the compose `broker` service too
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from dts.cli import (
    MAX_INTERVAL,
    MAX_LINES,
    MAX_TIMEOUT,
    MAX_WATCH_COUNT,
    MAX_WORKERS,
    HelpFormatter,
    Parser,
    float_between,
    int_between,
    run_main,
    shared_options,
)
from dts.config import MAX_CONFIG_BYTES, Settings, env_file, load_settings, project_dir, read_bounded, run_dir
from dts.engines import (
    chosen_engine,
    cli_commands,
    cli_options,
    engine_class,
    engine_reason,
    engines_in_use,
    engines_with_command,
    make_engine,
    refuse_a_second_engine,
    remember_engine,
)
from dts.engines import names as names_of_engines
from dts.engines.base import Engine, check_sizes, declared_sizes
from dts.engines.image import worker_image
from dts.errors import CliError, ExitCode, excerpt, exit_epilog
from dts.files import shown
from dts.reports.status_report import render_health, render_status

K8S_DIR = Path("deploy", "k8s")  # in the project: where `k8s` writes the manifests by default
# the pool commands every engine answers (the engines' own, `build`, `compose`, `stack`, come from the registry)
COMMANDS = ("up", "down", "set", "all", "status", "health", "logs", "engine", "k8s", "auto")
RESIZING = ("up", "set", "all", "auto")  # commands that start workers: on the engine the pools run on only
# (command, its arguments, what it does): each pool command's --help, and scale.py's list, from this one table
EXAMPLES = (
    ("up", "", "start every pool at its declared replicas (waits for ping)"),
    ("set", "worker-a 3", "three worker-a workers (new ones answer ping before this returns)"),
    ("set", "queue_a 3", "the same, naming the pool by its queue"),
    ("all", "2", "two workers in every pool"),
    ("status", "--json", "per pool: workers, slots, consumers, messages ready"),
    ("status", "--watch", "refresh every second (tasks/s, ready, unacked) until Ctrl-C"),
    ("health", "", "broker, each queue's consumers and depth, each worker's ping"),
    ("health", "--json", "the same report as status --json (problems, exit_code)"),
    ("logs", "-f", "follow the workers' logs"),
    ("down", "", "warm shutdown: running tasks finish, reserved ones go back to the queue"),
    ("build", "", "build the project's worker image (the compose and swarm engines run it)"),
    ("compose", "", "write the compose file rendered from the pools; print how to use it"),
    ("stack", "", "write the swarm stack file rendered from the pools; print how to deploy it"),
    ("engine", "", "the engine `auto` picks here (compose if Docker answers, else local)"),
    ("engine", "--image", "the project's worker image tag"),
    ("k8s", "", "write Deployments + KEDA ScaledObjects for the pools to deploy/k8s/"),
    ("k8s", "--image registry.example.com/dts-worker:1.0 --output k8s-out", ""),
    ("auto", "", "resize the pools with an `autoscale:` range on their queue depth (Ctrl-C)"),
    ("auto", "--once", "one look and the resizes it calls for"),
    ("auto", "--duration 600 --interval 1 --engine local", ""),
    ("up", "--engine swarm --init-swarm", "deploy the pools as a swarm stack (makes a single-node swarm if needed)"),
    ("up", "--engine compose --broker compose", "RabbitMQ in a container too (the `broker` profile)"),
    ("down", "--engine compose --broker compose --volumes", "remove the broker container and its data volume too"),
    ("up", "--engine compose --broker cluster", "a three-node RabbitMQ cluster in containers (`cluster`)"),
)


def examples(prog: str, names: dict[str, str], only: str | None = None) -> str:
    """The examples of one command (`only`), or of all, as `prog NAME ARGS   what it does` lines."""
    lines = ["examples:"]
    for command, arguments, words in EXAMPLES:
        if only not in (None, command):
            continue
        line = f"  {prog} {names.get(command, command)} {arguments}".rstrip()
        if words:
            line = f"{line:<38} {words}" if len(line) < 38 else f"{line}\n{'':38} {words}"
        lines.append(line)
    return "\n".join(lines) + "\n\n"


EPILOG = examples("python scale.py", {}) + exit_epilog("pools")


AUTO_RULE = """Pools with an `autoscale: {min, max, target}` mapping in the config are resized through their \
engine: up at once to ceil(ready / target) replicas, down only `autoscale.cooldown` seconds after the \
pool's last change and only to a size the ready messages fill to at most half its target (hysteresis). \
Surplus workers stop with a warm shutdown: running tasks finish, reserved ones go back to the queue.

"""


def pool_named(settings: Settings, name: str) -> str:
    """A pool by its name or by one of its queues' names."""
    if name in settings.pools:
        return name
    if name in settings.queues:
        return settings.pool_for_queue(name).name
    raise CliError(
        f"unknown pool {excerpt(name)}: {settings.path.name} declares pools {', '.join(settings.pools)} "
        f"(queues {', '.join(settings.queues)})",
        ExitCode.USAGE,
    )


def desired_sizes(args: argparse.Namespace, settings: Settings) -> dict[str, int]:
    """What `up`, `set` or `all` asks for, per pool (checked against the declaration)."""
    if args.command == "up":
        desired = declared_sizes(settings)
    elif args.command == "all":
        desired = {pool: args.count for pool in settings.pools}
    else:
        desired = {pool_named(settings, args.pool): args.count}
    check_sizes(desired, settings)
    return desired


def resize(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    from dts.amqp.checks import check_broker

    app = engine.app
    if args.command == "up":
        say_consumer_timeout_warnings(settings)
    engine.prepare()  # --broker compose: the `broker` service, healthy, before anything asks it
    check_broker(app, settings.broker.connect_timeout)
    plan = engine.start() if args.command == "up" else engine.resize(args.desired)
    if args.command == "up":
        remember_engine(run_dir(project_dir(settings)), engine.name)
    for pool, nodes in engine.workers().items():
        print(
            f"{pool}: {len(nodes)} worker(s) up ({plan[pool]:+d})"
            if pool in plan
            else f"{pool}: {len(nodes)} worker(s)"
        )
    return ExitCode.OK


def status(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    """status, status --watch and health: one report (dts.runs.status_query), three renderings."""
    from dts.runs.status_query import collect_status, watch

    app = engine.app
    engines = engines_in_use(engine, settings, args.engine)
    if args.command == "status" and args.watch:
        return watch(settings, engines, app, interval=args.interval, count=args.count, as_json=args.json)
    report = collect_status(settings, engines, app)
    if args.command == "health":
        say_consumer_timeout_warnings(settings)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(render_health(report) if args.command == "health" else render_status(report)))
        if args.command == "status":
            print(f"engine {engine.name}: {engine_reason(settings, args.engine)}")
            for line in engine.status_lines():  # the engine's own count (the swarm's running/desired tasks)
                print(line)
    if not report.broker_ok:
        print(f"{getattr(args, 'prog', 'scale.py').split()[0]}: error: {report.broker_error}", file=sys.stderr)
    return report.exit_code


def say_consumer_timeout_warnings(settings: Settings) -> None:
    """On stderr: each queue whose declared time limits and backoff can outlast broker.consumer_timeout."""
    from dts.config.holding import consumer_timeout_warnings

    for line in consumer_timeout_warnings(settings):
        print(line, file=sys.stderr)


def down(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    for each in engines_in_use(engine, settings, args.engine):  # stop what either engine started
        stopped = each.stop(volumes=args.volumes)
        print(f"{each.name}: stopped {-sum(stopped.values())} worker(s)")
    for line in engine.stopped_lines(args.volumes):
        print(line)
    remember_engine(run_dir(project_dir(settings)), None)
    return ExitCode.OK


def logs(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    """The logs of every engine in use that runs workers (as status and down cover them), else the chosen
    one's; --follow follows one: the first of them."""
    engines = engines_in_use(engine, settings, args.engine)
    running = [each for each in engines if any(each.workers().values())] or [engine]
    for each in running[:1] if args.follow else running:
        if len(running) > 1:
            print(f"== {each.name} workers", flush=True)
        each.logs(args.lines, args.follow)
    return ExitCode.OK


def command_refusal(command: str, engine: str) -> str:
    """Why `engine` cannot run `command`, an engine's own sub-command: the engines that can."""
    able = engines_with_command(command)
    return f"`{command}` needs the {' or '.join(able)} engine (this run uses {engine}): add --engine {able[0]}"


def engine_command(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    """An engine's own sub-command (build, compose, stack): what only some engines do."""
    if args.command not in engine.cli_commands:
        raise CliError(command_refusal(args.command, engine.name), ExitCode.USAGE)
    print("\n".join(engine.run_command(args.command)))
    return ExitCode.OK


def k8s(args: argparse.Namespace) -> int:
    """Render the manifests (no cluster, no Celery) and write them; print the files and how to apply them."""
    from dts import k8s as manifests

    settings = load_settings(args.config)
    text = read_bounded(settings.path, MAX_CONFIG_BYTES, "config", "pass --config PATH or set DTS_CONFIG")
    image = manifests.check_image(
        args.image or worker_image(project_dir(settings), code=settings.code)
    )  # $DTS_IMAGE, else the project's
    output = Path(args.output) if args.output else project_dir(settings) / K8S_DIR
    written = manifests.write(manifests.render(settings, text, image), output, settings.path.name)
    for note in manifests.device_notes(settings):
        logging.getLogger("dts.k8s").warning(note)
    print("\n".join(shown(path) for path in written))
    print(
        f"image: {image}\n       (push it to a registry the cluster pulls from; --image names it)\n"
        f"use: kubectl create secret generic {manifests.SECRET} \\\n"
        f"       --from-literal={manifests.SECRET_KEY}=amqp://USER:PASSWORD@BROKER_HOST:5672/VHOST\n"
        f"     kubectl apply -k {shown(output)}   (KEDA installed)"
    )
    return ExitCode.OK


def stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def autoscale(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    """scale.py auto: the loop of dts.runs.autoscale, one line per resize on stdout; Ctrl-C ends it with 0 and
    leaves the pools at their current sizes."""
    from dts.amqp.checks import check_broker
    from dts.runs.autoscale import policies, run

    app = engine.app
    check_broker(app, settings.broker.connect_timeout)
    rules = policies(settings)
    interval = args.interval or settings.autoscale.interval
    print(
        f"autoscaling on {engine.name}, a look every {interval:g}s, scale-down after {settings.autoscale.cooldown:g}s:"
        + "".join(f"\n  {pool} {r.min}..{r.max} (target {r.target} ready/replica)" for pool, r in rules.items()),
        flush=True,
    )
    before = signal.signal(signal.SIGTERM, stop_on_sigterm)  # `kill` and process supervisors stop it like Ctrl-C
    try:
        changes = run(
            engine,
            settings,
            app,
            interval=interval,
            duration=args.duration,
            once=args.once,
            say=lambda line: print(line, flush=True),
        )
    except KeyboardInterrupt:
        print("stopped (Ctrl-C or SIGTERM); the pools keep their current sizes", flush=True)
        return ExitCode.OK
    finally:
        signal.signal(signal.SIGTERM, before)  # in-process callers (tests) get their own handler back
    print(f"done: {len(changes)} resize(s); the pools keep their current sizes", flush=True)
    return ExitCode.OK


DESCRIPTION = "Start, stop, resize and inspect the worker pools."
# scale.py's sub-commands under the names `dts` gives them (the others keep theirs: dts up, dts status, ...)
DTS_NAMES = {"set": "scale", "all": "scale-all", "auto": "autoscale"}


def build_parser(prog: str = "scale.py") -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=DESCRIPTION, formatter_class=HelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub, {})
    return parser


def add_commands(sub, names: dict[str, str], under_dts: bool = False) -> None:
    """The pool commands as sub-commands of `sub`, each under names.get(command, command); every one sets
    `command` to scale.py's name for it (what run() reads). Under `dts`, each also names itself in errors
    and `up` prepares first what `make up` does beforehand (the broker's vhost and user, the image)."""
    base = shared_options()
    common = Parser(add_help=False, parents=[base])
    common.add_argument(
        "--engine", choices=names_of_engines(), help="where the workers run (default: engine.name in the config)"
    )
    options = cli_options()  # the engines' own, each on the commands it names (None: on every one)
    common.set_defaults(volumes=False, **{o.dest: o.default for o in options})
    for option in options:
        if option.commands is None:
            common.add_argument(option.flag, **option.argparse_kwargs())

    prog = "dts" if under_dts else "python scale.py"

    def add(command: str, parents: list, **kwargs) -> argparse.ArgumentParser:
        codes = exit_epilog("autoscale" if command == "auto" else "pools")
        kwargs.setdefault("epilog", examples(prog, names, command) + codes)
        kwargs.setdefault("formatter_class", HelpFormatter)
        parser = sub.add_parser(names.get(command, command), parents=parents, **kwargs)
        parser.set_defaults(command=command, prepare=False)
        for option in options:
            if option.commands and command in option.commands:
                parser.add_argument(option.flag, **option.argparse_kwargs())
        if under_dts:
            parser.set_defaults(run=run, prog=parser.prog, prepare=command == "up")
        return parser

    add_resizing(add, common)
    add_inspecting(add, common)
    for command, words in cli_commands().items():  # build, compose, stack: what only some engines do
        add(command, [common], help=words)
    add_k8s_and_auto(add, base, common)


def add_resizing(add, common: argparse.ArgumentParser) -> None:
    """up, down, set, all: the pools started, stopped and resized."""
    add("up", [common], help="every pool at its declared replicas")
    down = add("down", [common], help="stop every worker (warm shutdown)")
    down.add_argument(
        "--volumes", action="store_true", help="--broker compose|cluster: delete the broker's data volumes too"
    )
    one = add("set", [common], help="resize one pool: POOL COUNT")
    one.add_argument("pool", metavar="POOL", help="a pool name (or the name of one of its queues)")
    count = int_between(0, MAX_WORKERS)
    one.add_argument(
        "count",
        metavar="COUNT",
        type=count,
        help=f"new number of workers, 0..engine.max_replicas (at most {MAX_WORKERS})",
    )
    every = add("all", [common], help="resize every pool: COUNT")
    every.add_argument(
        "count",
        metavar="COUNT",
        type=count,
        help=f"new number of workers per pool, 0..engine.max_replicas (at most {MAX_WORKERS})",
    )


def add_inspecting(add, common: argparse.ArgumentParser) -> None:
    """status, health, logs, and the files and answers about the engine (build, compose, stack, engine)."""
    show = add("status", [common], help="workers, consumers and queue depth per pool")
    show.add_argument("--json", action="store_true", help="one JSON document (with --watch: one per line and refresh)")
    show.add_argument("-w", "--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    show.add_argument(
        "--interval",
        type=float_between(0, MAX_INTERVAL, low_open=True),
        default=1.0,
        metavar="S",
        help=f"seconds between refreshes, at most {MAX_INTERVAL:g} (default 1)",
    )
    show.add_argument(
        "--count",
        type=int_between(1, MAX_WATCH_COUNT),
        help=f"with --watch: stop after COUNT refreshes (at most {MAX_WATCH_COUNT})",
    )
    health = add("health", [common], help="broker, queue consumers and depth, worker ping")
    health.add_argument("--json", action="store_true", help="one JSON document (the same as status --json)")
    logs = add("logs", [common], help="the workers' logs")
    logs.add_argument(
        "--lines",
        type=int_between(1, MAX_LINES),
        default=20,
        help=f"lines per worker, at most {MAX_LINES} (default 20)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep following")
    which = add("engine", [common], help="print the engine `auto` resolves to")
    asks = which.add_mutually_exclusive_group()
    asks.add_argument("--needs-image", action="store_true", help="print yes if the engine runs the worker image")
    asks.add_argument("--deploy-args", action="store_true", help="print what `make deploy` adds to `scale.py up`")
    asks.add_argument("--image", action="store_true", help="print the project's worker image tag ($DTS_IMAGE)")


def add_k8s_and_auto(add, base: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The two subcommands beyond one engine's pools: render for Kubernetes, autoscale on queue depth."""
    kube = add("k8s", [base], help="write Kubernetes + KEDA manifests rendered from the pools")
    kube.add_argument(
        "--output",
        metavar="DIR",
        help="directory for the YAML files (default: deploy/k8s in the project, git-ignored)",
    )
    kube.add_argument(
        "--image",
        metavar="TAG",
        help="worker image the cluster pulls (default: $DTS_IMAGE, else the project's own, `dts engine --image`)",
    )
    auto = add(
        "auto",
        [common],
        help="resize the autoscaled pools on queue depth until Ctrl-C",
        description="Resize the autoscaled pools on queue depth until Ctrl-C.\n\n" + AUTO_RULE.strip(),
    )
    auto.add_argument(
        "--interval",
        type=float_between(0.1, 60),
        metavar="S",
        help="seconds between two looks, 0.1..60 (default: autoscale.interval)",
    )
    until = auto.add_mutually_exclusive_group()
    until.add_argument(
        "--duration",
        type=float_between(0, MAX_TIMEOUT, low_open=True),
        metavar="S",
        help=f"stop after S seconds, at most {MAX_TIMEOUT:g} (default: until Ctrl-C)",
    )
    until.add_argument("--once", action="store_true", help="one look, the resizes it calls for, then exit")


def run(args: argparse.Namespace) -> int:
    if args.command == "k8s":
        return k8s(args)  # pure rendering: no Celery, no engine
    settings = load_settings(args.config)
    if args.command in ("up", "set", "all"):
        args.desired = desired_sizes(args, settings)  # bad input is refused before Celery or an engine is asked
    if args.command == "auto" and not any(p.autoscale for p in settings.pools.values()):
        raise CliError(
            f"no pool has an autoscale: mapping in {settings.path.name}: add one, e.g. "
            "pools.worker-a.autoscale: {min: 1, max: 4, target: 20}",
            ExitCode.USAGE,
        )
    if args.command == "engine":
        return describe_engine(settings, args)
    if args.volumes and getattr(args, "broker", "host") == "host":
        raise CliError(
            "--volumes deletes the compose broker's data: it goes with --broker compose or cluster", ExitCode.USAGE
        )
    if args.command in RESIZING:
        refuse_a_second_engine(settings, args.engine)
    if args.prepare:
        settings = prepare(settings, args)
    # Celery is imported once the input is known good: a refusal does not wait for it (~0.3 s)
    from dts.app import make_app

    app = make_app(settings)
    engine = make_engine(settings, args.engine, app, **engine_options(args))
    actions = {"status": status, "health": status, "down": down, "auto": autoscale, "logs": logs}
    action = engine_command if args.command not in COMMANDS else actions.get(args.command, resize)
    return action(engine, settings, args)


def prepare(settings: Settings, args: argparse.Namespace) -> Settings:
    """What `dts up` does before it starts the pools (`make up` has its own targets do it): the workers'
    broker vhost and user in the project's .env, and the images the engine runs. Returns the settings
    read again, with .env's broker URL."""
    from dts.cli.broker import provision_broker
    from dts.engines.image import DEFAULT_RABBITMQ, build_broker_image, build_worker_image

    project = project_dir(settings)
    broker = getattr(args, "broker", "host")  # the compose engine's options
    print(provision_broker(broker, env_file(project)), flush=True)
    if broker != "host":
        print(f"broker image: {build_broker_image(getattr(args, 'rabbitmq', DEFAULT_RABBITMQ))}", flush=True)
    if engine_class(chosen_engine(settings, args.engine)).needs_image:
        print(f"worker image: {build_worker_image(project, settings.code)}", flush=True)
    return load_settings(settings.path)


def describe_engine(settings: Settings, args: argparse.Namespace) -> int:
    """scale.py engine: the engine `auto` resolves to, or what the Makefile asks of it (no Celery, no engine)."""
    name = chosen_engine(settings, args.engine)
    if args.needs_image:
        print("yes" if engine_class(name).needs_image else "no")
    elif args.deploy_args:
        print(" ".join(engine_class(name).deploy_args))
    elif args.image:
        from dts.engines.image import worker_image

        print(worker_image(project_dir(settings), code=settings.code))
    else:
        print(name)
    return ExitCode.OK


def engine_options(args: argparse.Namespace) -> dict[str, object]:
    """The engines' options given on the command line, not left at their defaults (make_engine refuses those
    the engine does not take)."""
    given = ((o.dest, getattr(args, o.dest, o.default), o.default) for o in cli_options())
    return {dest: value for dest, value, default in given if value != default}


def main(argv: list[str] | None = None, prog: str = "scale.py") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in (*COMMANDS, *cli_commands()):
        argv = ["set", *argv]  # the short form: scale.py worker-a 3
    return run_main(prog, build_parser(prog), run, argv)
