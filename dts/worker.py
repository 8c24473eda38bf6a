"""The worker entry point: every engine starts workers through it (`dts.naming.launch_argv`), and it execs
the one worker command line (`dts.naming.worker_argv`), so a pool's queues and options follow the config
everywhere (local processes, compose containers, swarm services, Kubernetes pods).

    python -m dts.worker worker-a              # exec `celery -A celery_app worker -Q queue_a -n worker-a@%h ...`
    DTS_POOL=worker-a python -m dts.worker     # the same (what the image's CMD does)
    python -m dts.worker --ping                # exit 0 when this host's worker of $DTS_POOL answers (health check)
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from dts import logs
from dts.cli import Parser, report
from dts.config import PoolSettings, Settings, load_settings
from dts.errors import CliError, ExitCode, excerpt, exit_epilog
from dts.naming import HOST, nodename, worker_argv

PING_BOUND = (
    10.0  # seconds --ping may take: connecting, asking, the reply (a health check keeps its own timeout above it)
)


def pool_settings(settings: Settings, name: str | None) -> PoolSettings:
    if not name:
        raise CliError("no pool given: pass one (python -m dts.worker POOL) or set DTS_POOL", ExitCode.USAGE)
    if name not in settings.pools:
        raise CliError(
            f"unknown pool {excerpt(name)}: {settings.path.name} declares {', '.join(settings.pools)}", ExitCode.USAGE
        )
    return settings.pools[name]


def ping(settings: Settings, pool: PoolSettings, host: str) -> int:
    from celery.utils.nodenames import host_format

    from celery_app import app, use_settings
    from dts.broker import reaching
    from dts.control import ask_workers
    from dts.deadline import Deadline, session

    use_settings(settings)
    node = host_format(nodename(pool.name, host))
    deadline = Deadline.after(PING_BOUND)
    with reaching(app), session(app, deadline) as conn:  # exit 3 in one line, not a kombu traceback
        pongs = ask_workers(app, conn, "ping", deadline, destination=[node], wait=PING_BOUND)
    return ExitCode.OK if node in pongs else ExitCode.FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="python -m dts.worker",
        description=__doc__.split("\n\n")[0],
        epilog=exit_epilog("python -m dts.worker"),
    )
    parser.add_argument("pool", nargs="?", default=os.environ.get("DTS_POOL"), help="pool name (default: $DTS_POOL)")
    parser.add_argument("--host", default=HOST, help="host part of the node name (default: %%h, the host name)")
    parser.add_argument("--ping", action="store_true", help="ping this host's worker of the pool instead")
    parser.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fmt = logs.log_format()
        settings = load_settings(args.config)
        pool = pool_settings(settings, args.pool)
        if args.ping:
            return ping(settings, pool, socket.gethostname() if args.host == HOST else args.host)
    except CliError as exc:
        report("dts.worker", f"dts.worker: error: {exc}", exc.exit_code)
        return exc.exit_code
    argv = [sys.executable, "-m", *worker_argv(pool, args.host, log_format=fmt)]
    os.environ["DTS_CONFIG"] = str(settings.path)  # the worker reads the same file
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # celery replaces this process: same pid, gets the engine's SIGTERM
    return ExitCode.FAILED  # not reached


if __name__ == "__main__":
    sys.exit(main())
