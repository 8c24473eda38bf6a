"""`dts worker POOL`: the worker entry point. Every engine starts workers through it
(`dts.naming.launch_argv`: `python -m dts worker POOL`), and it execs the one worker command line
(`dts.naming.worker_argv`), so a pool's queues and options follow the config everywhere (local processes,
compose containers, swarm services, Kubernetes pods).

    dts worker worker-a              # exec `celery -A dts.app worker -Q queue_a -n worker-a@%h ...`
    DTS_POOL=worker-a dts worker     # the same (what the image's CMD does)
    dts worker --ping                # exit 0 when this host's worker of $DTS_POOL answers (health check)
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from dts import logs
from dts.cli import command_parser, run_main
from dts.config import PoolSettings, Settings, load_settings
from dts.errors import CliError, ExitCode, excerpt, exit_epilog
from dts.naming import HOST, nodename, worker_argv

PROG = "dts worker"
DESCRIPTION = "Run a worker of a pool (what every engine starts), or ping this host's one."
EPILOG = """examples:
  dts worker worker-a              a worker of pool worker-a, in the foreground (what the engines start)
  DTS_POOL=worker-b dts worker     the pool from the environment (the worker image's CMD)
  dts worker worker-a --ping       exit 0 when this host's worker of worker-a answers (a health check)

""" + exit_epilog("worker")
PING_BOUND = 10.0  # seconds --ping may take: connecting, asking, the reply (a health check's timeout is above it)


def pool_settings(settings: Settings, name: str | None) -> PoolSettings:
    if not name:
        raise CliError("no pool given: pass one (dts worker POOL) or set DTS_POOL", ExitCode.USAGE)
    if name not in settings.pools:
        raise CliError(
            f"unknown pool {excerpt(name)}: {settings.path.name} declares {', '.join(settings.pools)}", ExitCode.USAGE
        )
    return settings.pools[name]


def ping(settings: Settings, pool: PoolSettings, host: str) -> int:
    from celery.utils.nodenames import host_format

    from dts.amqp.checks import reaching
    from dts.amqp.control import ask_workers
    from dts.amqp.deadline import Deadline, session
    from dts.app import make_app

    app = make_app(settings)
    node = host_format(nodename(pool.name, host))
    deadline = Deadline.after(PING_BOUND)
    with reaching(app), session(app, deadline) as conn:  # exit 3 in one line, not a kombu traceback
        pongs = ask_workers(app, conn, "ping", deadline, destination=[node], wait=PING_BOUND)
    return ExitCode.OK if node in pongs else ExitCode.FAILED


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool", nargs="?", default=os.environ.get("DTS_POOL"), help="pool name (default: $DTS_POOL)")
    parser.add_argument("--host", default=HOST, help="host part of the node name (default: %%h, the host name)")
    parser.add_argument("--ping", action="store_true", help="ping this host's worker of the pool instead")


def run(args: argparse.Namespace) -> int:
    fmt = logs.log_format()
    settings = load_settings(args.config)
    pool = pool_settings(settings, args.pool)
    if args.ping:
        return ping(settings, pool, socket.gethostname() if args.host == HOST else args.host)
    if any(t.call and t.queue in pool.queues for t in settings.tasks.values()):
        from dts.runtime.calls import import_problems  # the pool runs tasks of your own: their code must import

        problems = import_problems(settings, pool)
        if problems:
            raise CliError(
                f"pool {pool.name} cannot start: {problems[0]}; put the module on the workers' import path "
                "(the project's folder for local workers)",
                ExitCode.USAGE,
            )
    argv = [sys.executable, "-m", *worker_argv(pool, args.host, log_format=fmt)]
    os.environ["DTS_CONFIG"] = str(settings.path)  # the worker reads the same file
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # celery replaces this process: same pid, gets the engine's SIGTERM
    return ExitCode.FAILED  # not reached


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
