"""The command line: one `dts` command (dts.cli.main) whose sub-commands are this package's modules, one per
command. What they share is here: the options every command takes (`--config`, `-v`, declared once in
`shared_options`), argparse value types that say the allowed range, the help formatter (`HelpFormatter`:
no --help line wider than the terminal), logging set-up, and `run_main`, the one path from a parsed command
to its exit code (an expected failure, CliError, is one line on stderr).

    parser = command_parser("dispatch.py", __doc__, EPILOG)       # a command's own parser (its script's)
    parser.add_argument("--timeout", type=float_between(0, MAX_TIMEOUT, low_open=True))
    sys.exit(run_main("dispatch.py", parser, run, argv))

Every count and number a CLI takes has an upper bound (below; docs/reference/input-bounds.md), said in --help:
a typo like `--tasks 2000000000` is a one-line usage error (exit 2), not a MemoryError minutes later.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Callable

from dts.errors import CliError, ExitCode, excerpt
from dts.logs import formatter, json_enabled, log_format
from dts.reports.console import fit

# Upper bounds of the CLIs' numbers (docs/reference/input-bounds.md, generated from them).
MAX_TIMEOUT = 86400.0  # seconds (a day): --timeout of dispatch.py and load_test.py
MAX_REPEAT = 1000  # dispatch.py --repeat (rounds of about a second each)
MAX_FAIL_TIMES = 100  # dispatch.py --fail-times (retry.max_retries is at most 100)
MAX_TASKS = 50_000  # load_test.py --tasks, of each type: 100,000 tasks, ~1.2 KB each in the load generator
MAX_DURATION = 3600.0  # load_test.py --duration-a/-b (tasks.*.duration is at most 3600 too)
MAX_WORKERS = 1000  # scale.py set/all COUNT and each --sweep size (engine.max_replicas is at most 1000)
MAX_SWEEP_SIZES = 20  # load_test.py --sweep: at most this many sizes
MAX_INTERVAL = 3600.0  # scale.py status --interval, seconds
MAX_WATCH_COUNT = 1_000_000  # scale.py status --watch --count
MAX_LINES = 10_000  # scale.py logs --lines
MAX_DIGITS = 18  # an integer argument longer than this is refused before int() (no huge-int work)
MAX_USAGE_MESSAGE = 200  # characters of argparse's message kept in the one usage line
MAX_REPORT = 1000  # characters of any final error line


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {excerpt(text)})")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {excerpt(text)})")
    return value


def probability(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {excerpt(text)})")
    return value


def non_negative_int(text: str) -> int:
    if not re.fullmatch(rf"[0-9]{{1,{MAX_DIGITS}}}", text.strip()):
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {excerpt(text)})")
    return int(text)


def positive_int(text: str) -> int:
    if not re.fullmatch(rf"[0-9]{{1,{MAX_DIGITS}}}", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (got {excerpt(text)})")
    return int(text)


def int_between(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in low..high, else a one-line usage error naming the range."""

    def parse(text: str) -> int:
        digits = text.strip()
        if not re.fullmatch(rf"[0-9]{{1,{MAX_DIGITS}}}", digits) or not low <= int(digits) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high} (got {excerpt(text)})")
        return int(digits)

    parse.rule = f"an integer from {low} to {high}"
    return parse


def float_between(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a number in low..high (above low when low_open), else a one-line usage error."""

    def parse(text: str) -> float:
        value = _number(text)
        if not ((low < value) if low_open else (low <= value)) or not value <= high:  # also refuses nan
            rule = f"> {low:g} and <= {high:g}" if low_open else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be a number {rule} (got {excerpt(text)})")
        return value

    parse.rule = f"a number > {low:g} and <= {high:g}" if low_open else f"a number from {low:g} to {high:g}"
    return parse


# what each argparse type accepts, in the words of its error message (the docs' input-bounds page lists them)
positive_float.rule = "a number > 0"
non_negative_float.rule = "a number >= 0"
probability.rule = "a number from 0 to 1"
non_negative_int.rule = "an integer >= 0"
positive_int.rule = "an integer >= 1"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (naming the fix: --help) and exit 2; argparse's
    message (which may quote a whole argument) is cut to MAX_USAGE_MESSAGE characters."""

    def error(self, message: str):
        message = " ".join(message.split())
        if len(message) > MAX_USAGE_MESSAGE:
            message = message[: MAX_USAGE_MESSAGE - 3] + "..."
        report(self.prog, f"{self.prog}: error: {message} (see {self.prog} --help)", ExitCode.USAGE)
        self.exit(ExitCode.USAGE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help with the description and epilog as written (their line breaks, their columns), but no
    wider than the terminal (COLUMNS): a longer line is wrapped, and goes on under its own text (`fit`)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(indent + part for line in text.split("\n") for part in fit(line, width))


CONFIG_HELP = "config file (default: ./test-config.yml or the nearest one above; $DTS_CONFIG)"


def shared_options() -> argparse.ArgumentParser:
    """The options every command takes, declared once: --config and -v (a parent of each command's parser)."""
    shared = Parser(add_help=False)
    shared.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    shared.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr (-vv: debug)")
    return shared


def json_option() -> argparse.ArgumentParser:
    """--json, declared once for the commands that print a report (a parent of their parsers)."""
    option = Parser(add_help=False)
    option.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    return option


def command_parser(prog: str, description: str, epilog: str = "", parents=()) -> argparse.ArgumentParser:
    """A command's parser as its own script (`dispatch.py`, `scale.py`): the shared options, then its own."""
    return Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
        parents=[shared_options(), *parents],
    )


def setup_logging(verbosity: int) -> None:
    """Diagnostics go to stderr through logging: -v info, -vv debug; text, or JSON lines when LOG_FORMAT=json
    (an unknown LOG_FORMAT is a CliError, exit 2)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format()))
    logging.basicConfig(level=level, handlers=[handler])


def report(prog: str, line: str, exit_code: int, then: tuple[str, ...] = ()) -> None:
    """The one line a CLI ends with on an expected failure, on stderr: as is, or a JSON line (event = the
    line, with prog and exit_code) when LOG_FORMAT=json. Always one line, of at most MAX_REPORT characters
    (a safety net: messages quote excerpts of values, never whole ones). `then`: the exact commands that fix
    it (CliError.then), one a line after it, indented; in the JSON line, its `then` list."""
    line = " ".join(line.splitlines())
    if len(line) > MAX_REPORT:
        line = line[: MAX_REPORT - 3] + "..."
    if not json_enabled():
        print("\n".join([line, *(f"  {command}" for command in then)]), file=sys.stderr)
        return
    if not logging.getLogger().handlers:  # an error before (or in) setup_logging
        setup_logging(0)
    extra = {"prog": prog, "exit_code": int(exit_code), **({"then": list(then)} if then else {})}
    logging.getLogger("dts.cli").error(line, extra=extra)


def exit_now(code: int) -> None:
    """End the process with `code` once stdout, stderr and the log handlers are flushed, skipping the
    interpreter's teardown of the ~600 modules Celery loads (~25 ms of a dispatch's wall). Only for a
    CLI's __main__, after everything it writes is written (result files are written whole, then renamed)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (e.g. `| head`): nothing more can reach it
            code = code or 1
    logging.shutdown()
    os._exit(code)


def run_main(
    prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: list[str] | None
) -> int:
    """Parse, set up logging, run; expected failures become `prog: error: ...` and their exit code (`prog`:
    the parsed command's own name when it sets one, as `dts`'s sub-commands do)."""
    args = parser.parse_args(argv)
    prog = getattr(args, "prog", None) or prog
    try:
        setup_logging(args.verbose)
        return run(args)
    except CliError as exc:
        report(prog, f"{prog}: error: {exc}", exc.exit_code, exc.then)
        return exc.exit_code
    except KeyboardInterrupt:
        report(prog, f"{prog}: interrupted; tasks already sent still run on the workers", ExitCode.INTERRUPTED)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
