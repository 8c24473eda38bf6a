"""Exit codes shared by every CLI, and the two exceptions that carry them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What every CLI of the project returns (docs/reference/exit-codes.md)."""

    OK = 0
    FAILED = 1  # tasks failed, isolation breached, threshold missed, a worker failed to start
    USAGE = 2  # bad usage or config
    BROKER_UNREACHABLE = 3  # broker unreachable, login refused, or lost
    NO_CONSUMER = 4  # a queue has no consumer
    INTERRUPTED = 130  # Ctrl-C


MEANINGS = {  # the docs' exit-code table is generated from this (scripts/docs_reference.py)
    ExitCode.OK: "done: every task succeeded, the check passed",
    ExitCode.FAILED: "tasks failed or are unknown, isolation was breached, a threshold was missed, a worker did "
    "not start, or an operation could not be done",
    ExitCode.USAGE: "bad usage or config: one line naming the problem and the fix; nothing was sent",
    ExitCode.BROKER_UNREACHABLE: "the broker is unreachable, refused the login, stopped answering, blocks "
    "publishers, or was lost and not back by the deadline (a run's partial report is printed and saved first)",
    ExitCode.NO_CONSUMER: "a task's queue has no consumer: its pool has no worker (`make up`)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); tasks already sent still run on the workers",
}


_USAGE = "bad usage or config"
_LOST = "broker unreachable, or lost and not back before the deadline (the partial report is printed and saved)"
_NO_CONSUMER = "a queue has no consumer (also: lost them all while waiting)"
# What each command's exit codes mean for it (by `dts` sub-command; "pools": up, down, scale, status, health,
# logs, ...): the one mapping each --help's last lines (exit_epilog) and the docs' exit-code page are written from.
CLI_EXIT_CODES: dict[str, dict[int, str]] = {
    "dispatch": {
        0: "ok",
        1: "a task failed or has no result (unknown), or isolation was breached",
        2: _USAGE,
        3: _LOST,
        4: _NO_CONSUMER,
        130: "interrupted",
    },
    "load-test": {
        0: "ok",
        1: "a task failed or has no result (unknown), or a load_test threshold was missed",
        2: _USAGE,
        3: _LOST,
        4: _NO_CONSUMER,
        130: "interrupted",
    },
    "pools": {
        0: "ok (status --watch: also on Ctrl-C)",
        1: "a worker failed to start",
        2: _USAGE,
        3: "broker unreachable",
        4: "status, health: a queue has no consumer, or a worker the engine runs does not answer ping",
        130: "interrupted",
    },
    "autoscale": {
        0: "ok (also on Ctrl-C or SIGTERM)",
        1: "a new worker failed to start",
        2: _USAGE + " (e.g. no pool has an autoscale: mapping)",
        3: "broker unreachable at start (later, a look it does not answer is logged and skipped)",
    },
    "dlq": {
        0: "ok",
        1: "purge declined, or migration refused (the queue has consumers)",
        2: _USAGE + ", or a queue needs `migrate`",
        3: "broker unreachable, or stopped answering",
        130: "interrupted",
    },
    "flower": {0: "ok", 1: "Flower failed", 2: _USAGE, 3: "broker unreachable", 130: "interrupted"},
    "worker": {
        0: "ok (--ping: the worker answered; otherwise it execs `celery worker`, whose codes follow)",
        1: "--ping: no answer",
        2: _USAGE,
        3: "--ping: broker unreachable",
    },
    "init": {0: "ok: the file is written", 2: "bad usage, or the file exists (nothing is overwritten)"},
    "revoke": {0: "ok: the revoke is sent to every worker", 2: _USAGE, 3: "broker unreachable", 130: "interrupted"},
    "config": {0: "ok: the config is valid (printed resolved)", 2: "the config is invalid: one line naming the key"},
    "broker": {
        0: "ok",
        1: "could not create the vhost or user (e.g. no root): .env is written and the sudo commands to run "
        "once are printed",
        2: "bad usage (checked before anything is created)",
        3: "no broker listens",
        130: "interrupted",
    },
}


def exit_epilog(command: str) -> str:
    """The `exit codes: 0 ok, 1 ...` line that ends `command`'s --help, from CLI_EXIT_CODES (one line: the
    help formatter, dts.cli.HelpFormatter, wraps it at the terminal's width)."""
    return "exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in CLI_EXIT_CODES[command].items())


class CliError(Exception):
    """An expected failure: one line for stderr and the exit code that goes with it."""

    exit_code: int = ExitCode.FAILED
    then: tuple[str, ...] = ()  # lines printed after the error line: the exact commands that fix it

    def __init__(self, message: str, exit_code: int | None = None, then: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.then = tuple(then)


class ConfigError(CliError):
    """A config file (or environment override) that cannot be used: exit 2."""

    exit_code = ExitCode.USAGE


def excerpt(text: str, limit: int = 60) -> str:
    """`text` for an error message: repr'd, and cut to `limit` characters (a message stays one short line
    whatever the input: a 10 MB value gives a 60-character excerpt)."""
    shown = repr(text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class Transient(Exception):
    """Raised by a task of your own (`call:`) for a failure worth another attempt: retried with backoff,
    like the exceptions its `retry_on:` names (`from dts import Transient`)."""
