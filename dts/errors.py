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
