"""`dts`: the one command. Each sub-command is a module of dts.cli; they share --config and -v (declared
once, dts.cli.shared_options) and one exit path (dts.cli.run_main).

    dts init && dts up && dts dispatch && dts down      # a project in the working folder, from nothing
    dts scale worker-a 3                                # three workers in pool worker-a
    dts --help                                          # every command; dts COMMAND --help: its options
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from dts import __version__
from dts.cli import HelpFormatter, Parser, run_main

PROG = "dts"
DESCRIPTION = "Route test jobs to isolated pools of Celery workers over RabbitMQ: start, dispatch, scale, measure."
EPILOG = """examples:
  dts init                          write a starter test-config.yml in this folder (the project)
  dts up --engine local             broker vhost/user in .env, then every pool at its replicas, as processes
  dts dispatch                      task_a and task_b at once: each result, its time and retries
  dts scale worker-a 2              resize one pool
  dts status                        per pool: workers, consumers, queue depth
  dts load-test --tasks 20          what the pool sizes buy
  dts down                          stop every worker

Every command takes --config PATH (default: ./test-config.yml or the nearest one above; $DTS_CONFIG) and -v.
Exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 broker unreachable, 4 a queue has no consumer, \
130 interrupted (each command's --help says what they mean for it).
"""
# sub-commands with their own options, in the order `dts --help` lists them: name -> (module, help); a
# module is imported when its command runs, or for `dts --help` (the pool commands come from dts.cli.pools)
FIRST = {"init": ("dts.cli.init", "write a starter test-config.yml here: this folder becomes a project")}
SINGLE = {
    "dispatch": ("dts.cli.dispatch", "send task_a and task_b at once; print results, times, retries"),
    "load-test": ("dts.cli.load_test", "measure what the pool sizes buy"),
    "flower": ("dts.cli.flower", "Flower, Celery's web monitor, behind a login"),
    "worker": ("dts.cli.worker", "run one worker of a pool (what every engine starts)"),
    "revoke": ("dts.cli.revoke", "stop tasks by id (a command task's whole process group)"),
    "broker": ("dts.cli.broker", "the workers' RabbitMQ vhost and user, written to .env"),
}
# sub-commands with sub-commands of their own: name -> (module, help)
GROUPS = {
    "dlq": ("dts.cli.dlq", "dead letters: list, replay; purge the work queues; migrate"),
    "config": ("dts.cli.check_config", "check a config file and print it resolved"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"dts {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    from dts.cli import pools

    add_command(sub, "init", *FIRST["init"])
    pools.add_commands(sub, pools.DTS_NAMES, under_dts=True)  # up, down, scale, status, health, logs, ...
    for name, (module, text) in {**SINGLE, **GROUPS}.items():
        add_command(sub, name, module, text)
    return parser


def add_command(sub, name: str, dotted: str, text: str) -> None:
    """`dts NAME`: the command's own parser (its options, its -h) as the parent of its `dts NAME` parser."""
    module = import_module(dotted)
    prog = f"{PROG} {name}"
    command = sub.add_parser(
        name,
        parents=[module.build_parser(prog)],
        add_help=False,
        help=text,
        description=module.DESCRIPTION,
        epilog=module.EPILOG,
        formatter_class=HelpFormatter,
    )
    command.set_defaults(run=module.run, prog=prog)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own = {**FIRST, **SINGLE, **GROUPS}.get(argv[0]) if argv else None
    if own:  # the command's own parser, the same one `dts` holds: no need to build the others (~0.15 s)
        module = import_module(own[0])
        prog = f"{PROG} {argv[0]}"
        return run_main(prog, module.build_parser(prog), module.run, argv[1:])
    return run_main(PROG, build_parser(), lambda args: args.run(args), argv)
