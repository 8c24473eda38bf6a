"""`dts flower`: Flower, Celery's web monitor, for this project's pools: behind a login (dts.flower_auth), on
127.0.0.1:5555 by default.

    dts flower                      # what `make flower` runs: http://127.0.0.1:5555 until Ctrl-C
    dts flower --port 5556          # another port
    dts flower --address 0.0.0.0    # what the compose `flower` service runs inside its container
    dts flower --login              # create the login in .env if needed; print user and password
    dts flower --engine compose     # the `monitoring` compose profile, beside the worker containers
"""

from __future__ import annotations

import argparse
import os

from dts.cli import command_parser, int_between, run_main
from dts.config import env_file, load_settings, project_dir
from dts.engines import engine_classes
from dts.errors import ExitCode, exit_epilog
from dts.flower_auth import DEFAULT_ADDRESS, DEFAULT_PORT, ensure_login, protect_metrics

PROG = "dts flower"
DESCRIPTION = "Flower for this project's pools, behind the login in .env (DTS_FLOWER_USER/PASSWORD)."
EPILOG = """examples:
  dts flower                      http://127.0.0.1:5555 until Ctrl-C
  dts flower --login              create the login in .env if needed; print user and password
  dts flower --engine compose     the `monitoring` compose profile's container, beside the workers

""" + exit_epilog("flower")


def serve(config: str | None, address: str, port: int) -> int:
    """Run Flower in this process until it is stopped (SIGTERM or Ctrl-C)."""
    from dts.amqp.checks import check_broker, reaching, redact_url
    from dts.amqp.control import ask_workers
    from dts.amqp.deadline import Deadline, session
    from dts.app import make_app

    settings = load_settings(config)
    app = make_app(settings)
    user, password, where = ensure_login(env_file(project_dir(settings)))
    check_broker(app, settings.broker.connect_timeout)  # exit 3 with the fix, before Flower retries forever
    # Workers send task events only when asked; Flower asks every 5 s from its start. Asking now (and waiting
    # for the replies) means tasks sent from the moment Flower answers are seen.
    deadline = Deadline.after(settings.broker.connect_timeout)
    with reaching(app), session(app, deadline) as conn:
        replies = ask_workers(app, conn, "enable_events", deadline, wait=1.0)
    os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password}"  # not on the command line: `ps` shows that to all
    protect_metrics()
    print(
        f"Flower on http://{address}:{port} for {redact_url(settings.broker.url)}: user {user!r}, "
        f"password: {where} (`make flower-login` prints it); task events on for {len(replies)} worker(s)",
        flush=True,
    )
    code = app.start(["flower", f"--address={address}", f"--port={port}"])
    return code or ExitCode.OK


def on_engine(config: str | None, name: str, port: int) -> int:
    """Flower run by an engine that serves one (the compose engine's `monitoring` service), once it answers."""
    from dts.app import make_app
    from dts.engines import make_engine

    settings = load_settings(config)
    user, _, where = ensure_login(env_file(project_dir(settings)))
    engine = make_engine(settings, name, make_app(settings))
    print(f"{engine.start_flower(port)}: user {user!r}, password: {where} (`dts flower --login` prints it)")
    return ExitCode.OK


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int_between(1, 65535), default=DEFAULT_PORT, help="port (default: %(default)s)")
    serving = [name for name, cls in engine_classes().items() if cls.serves_flower]  # compose's `monitoring`
    parser.add_argument(
        "--engine",
        choices=("local", *serving),
        default="local",
        help=f"local: this process (default); {', '.join(serving)}: the engine's own Flower service",
    )
    parser.add_argument("--login", action="store_true", help="create the login if needed and print it, then exit")


def run(args: argparse.Namespace) -> int:
    if args.login:
        user, password, where = ensure_login(env_file(project_dir(load_settings(args.config))))
        print(f"user: {user}\npassword: {password}\n(kept as {where})")
        return ExitCode.OK
    if args.engine != "local":
        return on_engine(args.config, args.engine, args.port)
    return serve(args.config, args.address, args.port)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
