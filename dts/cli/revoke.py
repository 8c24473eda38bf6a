"""`dts revoke TASK_ID ...`: stop tasks (Celery's revoke with terminate). A task still queued is dropped
when a worker takes it; a running one is stopped: its pool process gets SIGTERM, and a command task's whole
process group is killed with it (dts.runtime.commands); its result says REVOKED.

    dts revoke 3f2c1d9e-...            # the id the live lines, the report and the result file show
"""

from __future__ import annotations

import argparse
import re

from dts.cli import command_parser, run_main
from dts.config import load_settings
from dts.errors import ExitCode, exit_epilog

PROG = "dts revoke"
DESCRIPTION = "Stop tasks by id: queued ones are dropped, running ones stopped (a command's whole process group)."
EPILOG = """examples:
  dts revoke 3f2c1d9e-0a4b-4c1e-9d2a-7b6f5e4d3c2b    the id from the live lines, the report or the result file
  dts revoke ID1 ID2                                 several at once

""" + exit_epilog("revoke")
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{7,63}")  # Celery's ids are UUIDs


def task_id(text: str) -> str:
    if not TASK_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a task id like 3f2c1d9e-0a4b-... (got {text[:70]!r})")
    return text


task_id.rule = "a task id: letters, digits and -, 8 to 64 characters"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", type=task_id, metavar="TASK_ID", help="the tasks to stop")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    from dts.amqp.checks import reaching
    from dts.amqp.control import revoke
    from dts.amqp.deadline import Deadline, session
    from dts.app import make_app

    app = make_app(settings)
    with reaching(app), session(app, Deadline.after(settings.broker.connect_timeout)) as conn:
        revoke(app, conn, args.ids)
    for each in args.ids:
        print(f"revoked {each}: dropped if still queued; stopped if running (a command's process group too)")
    return ExitCode.OK


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
