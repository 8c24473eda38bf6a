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
from dts.logs import formatter, json_enabled, log_format


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
        report(self.prog, f"{self.prog}: error: {message} (see {self.prog} --help)", ExitCode.USAGE)
        self.exit(ExitCode.USAGE)


def setup_logging(verbosity: int) -> None:
    """Diagnostics go to stderr through logging: -v info, -vv debug; text, or JSON lines when LOG_FORMAT=json
    (an unknown LOG_FORMAT is a CliError, exit 2)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format()))
    logging.basicConfig(level=level, handlers=[handler])


def report(prog: str, line: str, exit_code: int) -> None:
    """The one line a CLI ends with on an expected failure, on stderr: as is, or a JSON line (event = the
    line, with prog and exit_code) when LOG_FORMAT=json."""
    if not json_enabled():
        print(line, file=sys.stderr)
        return
    if not logging.getLogger().handlers:  # an error before (or in) setup_logging
        setup_logging(0)
    logging.getLogger("dts.cli").error(line, extra={"prog": prog, "exit_code": int(exit_code)})


def run_main(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: list[str] | None) -> int:  # fmt: skip
    """Parse, set up logging, run; expected failures become `prog: error: ...` and their exit code."""
    args = parser.parse_args(argv)
    try:
        setup_logging(args.verbose)
        return run(args)
    except CliError as exc:
        report(prog, f"{prog}: error: {exc}", exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        report(prog, f"{prog}: interrupted; tasks already sent still run on the workers", ExitCode.INTERRUPTED)
        return ExitCode.INTERRUPTED
