"""What the three CLIs share: argparse value types that say the allowed range, logging set-up, and
the wrapper that turns an expected failure (CliError) into one line on stderr and its exit code.

    parser.add_argument("--timeout", type=positive_float)
    sys.exit(run_main("dispatch.py", build_parser(), run, argv))
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Callable

from dts.errors import CliError, ExitCode


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {text!r})")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {text!r})")
    return value


def probability(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text!r})")
    return value


def non_negative_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})")
    return int(text)


def positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {text!r})")
    return int(text)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (naming the fix: --help) and exit 2."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def setup_logging(verbosity: int) -> None:
    """Diagnostics go to stderr through logging: -v info, -vv debug."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_main(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: list[str] | None) -> int:  # fmt: skip
    """Parse, set up logging, run; expected failures become `prog: error: ...` and their exit code."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return run(args)
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; tasks already sent still run on the workers", file=sys.stderr)
        return ExitCode.INTERRUPTED
