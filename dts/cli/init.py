"""`dts init`: write a commented starter test-config.yml into the working folder, which makes it a project
(its .env, .run/ and results/ go beside it). Nothing is overwritten.

    dts init                 # ./test-config.yml: two pools, worker-a and worker-b, each with its queue
    dts init --path ci.yml   # another file name
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

from dts.cli import command_parser, run_main
from dts.config import CONFIG_NAME
from dts.errors import CliError, ExitCode, exit_epilog
from dts.files import write_atomic

PROG = "dts init"
DESCRIPTION = "Write a commented starter test-config.yml here (never overwrites one)."
EPILOG = """examples:
  dts init                     write ./test-config.yml, then: dts up --engine local && dts dispatch
  dts init --path lab.yml      another name (pass --config lab.yml to the other commands)

""" + exit_epilog("init")
NEXT_STEPS = (
    "next: dts up (broker vhost/user, then the pools: local processes, or containers where\n"
    "      Docker answers); dts dispatch; dts status; dts down\n"
    "keep .env (the broker credentials), .run/ and results/ out of version control"
)


def starter_config() -> str:
    """The starter config the package carries (this repository's test-config.yml)."""
    return files("dts").joinpath("data", CONFIG_NAME).read_text()


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path", type=Path, default=Path(CONFIG_NAME), help=f"the file to write (default: ./{CONFIG_NAME})"
    )


def run(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.exists() or path.is_symlink():
        raise CliError(f"{path} exists: nothing was overwritten (edit it, or remove it first)", ExitCode.USAGE)
    if not path.parent.is_dir():
        raise CliError(f"{path.parent} is not a folder: create it first, or give another --path", ExitCode.USAGE)
    try:
        write_atomic(path, starter_config())
    except OSError as exc:
        raise CliError(f"cannot write {path} ({exc.strerror})", ExitCode.USAGE) from None
    print(f"wrote {path}\n{NEXT_STEPS}")
    return ExitCode.OK


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
