"""Exit codes shared by every CLI, and the two exceptions that carry them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What every CLI of the project returns (README, "Exit codes")."""

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


class CliError(Exception):
    """An expected failure: one line for stderr and the exit code that goes with it."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(CliError):
    """A config file (or environment override) that cannot be used: exit 2."""

    exit_code = ExitCode.USAGE


def excerpt(text: str, limit: int = 60) -> str:
    """`text` for an error message: repr'd, and cut to `limit` characters (a message stays one short line
    whatever the input: a 10 MB value gives a 60-character excerpt)."""
    shown = repr(text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
