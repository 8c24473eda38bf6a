"""`dts dlq`: the dead-letter queues' command line (the operations are dts.amqp.queue_ops, their text and JSON
dts.reports.deadletter_report).

    dts dlq list [--json]                 # what `make dlq` runs: task, id, reason, attempts, time
    dts dlq replay [--queue Q] [--id ID]  # `make dlq-replay`: back to the work queue, fresh retries
    dts dlq purge [--yes] [--dead]        # `make purge`: empty the work queues (after a confirmation)
    dts dlq migrate                       # `make migrate-queues`: redeclare old queues, keep messages
"""

from __future__ import annotations

import argparse
import json
import sys

from dts.amqp import queue_ops
from dts.amqp.checks import check_broker, reaching, require_current_queues
from dts.amqp.deadline import Deadline, session
from dts.app.conf import dead_letter_queue_name, declared_queues
from dts.cli import HelpFormatter, Parser, json_option, run_main, shared_options
from dts.config import Settings, load_settings
from dts.errors import CliError, ExitCode, exit_epilog
from dts.reports.deadletter_report import (
    NOT_PURGED,
    list_json,
    purge_question,
    render_list,
    render_migration,
    render_purge,
    render_replay,
)

PROG = "dts dlq"
DESCRIPTION = "Dead-letter queues: list, replay; purge the work queues; migrate."
EPILOG = """examples:
  dts dlq list                     every dead letter: time, task, id, attempts, reason
  dts dlq list --json              the same as one JSON document
  dts dlq replay                   every dead letter back to its work queue (retries start again)
  dts dlq replay --queue queue_a --id 3f2c...   one task
  dts dlq purge                    empty the work queues, after a confirmation (--yes: none)
  dts dlq purge --dead --yes       the dead-letter queues too
  dts dlq migrate                  queues declared by an older version: redeclare, messages kept

"""
EPILOG += exit_epilog("dlq")


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError(
            "refusing to purge without a confirmation: stdin is not a terminal; pass --yes (make purge YES=1)",
            ExitCode.USAGE,
        )
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def selected_queues(settings: Settings, names: list[str] | None) -> list[str]:
    for name in names or []:
        if name not in settings.queues:
            declared = ", ".join(settings.queues)
            raise CliError(f"unknown queue {name!r}: {settings.path.name} declares {declared}", ExitCode.USAGE)
    return list(names or settings.queues)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    from dts.app import make_app  # Celery once the config is known good

    app = make_app(settings)
    queues = selected_queues(settings, args.queue)
    check_broker(app, settings.broker.connect_timeout, check_queues=False)
    # each request is answered within broker.connect_timeout, or the command ends with exit 3
    with reaching(app), session(app, Deadline.after(settings.broker.connect_timeout)) as conn:
        conn = conn.connection  # the py-amqp connection: channels of our own
        declared = [q for q in declared_queues(settings) if q.name in queues]
        if args.command == "migrate":
            print("\n".join(render_migration(queue_ops.migrate(conn, declared))))
            return ExitCode.OK
        require_current_queues(conn, declared)
        if args.command == "list":
            letters = {queue: queue_ops.browse(conn, queue) for queue in queues}
            print(json.dumps(list_json(letters), indent=2) if args.json else "\n".join(render_list(letters)))
            return ExitCode.OK
        if args.command == "replay":
            done = queue_ops.replay(conn, queues, set(args.id) if args.id else None, settings.broker)
            print("\n".join(render_replay(done)))
            return ExitCode.OK
        targets = queues + ([dead_letter_queue_name(q) for q in queues] if args.dead else [])
        depth = {q: queue_ops.depth(conn, q) or 0 for q in targets}
        if not args.yes and not confirm(purge_question(depth)):
            print(NOT_PURGED)
            return ExitCode.FAILED
        print("\n".join(render_purge(queue_ops.purge(conn, targets))))
        return ExitCode.OK


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=DESCRIPTION, formatter_class=HelpFormatter, epilog=EPILOG)
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def add_commands(sub) -> None:
    """list, replay, purge, migrate as sub-commands of `sub`."""
    common = Parser(add_help=False, parents=[shared_options()])

    def add(name: str, parents: list, text: str) -> argparse.ArgumentParser:  # each with the examples, exit codes
        return sub.add_parser(name, parents=parents, help=text, epilog=EPILOG, formatter_class=HelpFormatter)

    common.add_argument("--queue", action="append", metavar="Q", help="a work queue (repeatable; default: all)")
    add("list", [common, json_option()], "every dead letter: time, task, id, attempts, reason")
    again = add("replay", [common], "dead letters back to their work queue")
    again.add_argument("--id", action="append", metavar="TASK_ID", help="only this task id (repeatable)")
    empty = add("purge", [common], "empty the work queues (asks first)")
    empty.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    empty.add_argument("--dead", action="store_true", help="also empty their dead-letter queues")
    add("migrate", [common], "redeclare queues declared without dead-lettering")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
