"""What a task of your own does (`call: module:function` in test-config.yml): import the callable, call it
with its params, retry with backoff what its `retry_on:` names (and `dts.Transient`), and return the same
result envelope as the built-in tasks, with the callable's return value as `value`.

    load_callable("mylab.jobs:flash")          # the function; CallImportError naming the module and the error
    run_call(task, "flash", settings, {"board": "rev-b"})   # in a worker: the result dict every report reads
    import_problems(settings, pool)            # before a worker starts: each of its tasks' import error, in words

The dispatcher never imports a callable: it sends tasks by name, so the code need only be on the workers.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from dts.config import PoolSettings, Settings, TaskSettings
from dts.config.schema import param_problem, param_rule_problem
from dts.errors import Transient, excerpt
from dts.runtime.work import TimeLimitError, envelope, retry_later, soft_limit_of

DELAYS_KEY = "_dts_retry_delays"  # the backoff delays so far, carried by a retried message (not a param)
MAX_MESSAGE = 200  # characters of the value shown as a result's message


class CallImportError(Exception):
    """A task's callable cannot be imported (not retried: every attempt would fail the same way)."""


class CallFailed(Exception):
    """A task of your own failed for good: an exception not worth a retry, or the retries ran out. `output`
    (a command's exit code, output tails and report) travels in the result as the exception's second
    argument; its text and repr (the task-failed event's, the dead letter's reason) are the reason alone."""

    def __init__(self, why: str, output: dict[str, Any] | None = None):
        super().__init__(*((why, output) if output else (why,)))
        self.why = why

    def __str__(self) -> str:
        return self.why

    def __repr__(self) -> str:
        return f"CallFailed({self.why!r})"


class NotJSON(Exception):
    """The callable returned a value that is not JSON-serialisable (the result could not be sent)."""


@cache
def load_callable(spec: str) -> Callable[..., Any]:
    """The function `module:function` names (imported once per process)."""
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception as exc:  # noqa: BLE001 - any import-time error of the user's module is reported, in one line
        raise CallImportError(
            f"cannot import {spec} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    if not callable(found):
        raise CallImportError(f"cannot import {spec} (it is a {type(found).__name__}, not a callable)")
    return found


def import_problems(settings: Settings, pool: PoolSettings) -> list[str]:
    """For each task of your own that `pool` serves, why its callable cannot be imported here (none: all can)."""
    problems = []
    for task in settings.tasks.values():
        if task.call and task.queue in pool.queues:
            try:
                load_callable(task.call)
            except CallImportError as exc:
                problems.append(f"tasks.{task.name}: {exc}")
    return problems


def retryable(exc: BaseException, names: tuple[str, ...]) -> bool:
    """dts.Transient, or a class (or a base of it) that `retry_on` names by its dotted name (pure)."""
    if isinstance(exc, Transient):
        return True
    return any(f"{c.__module__}.{c.__qualname__}" in names for c in type(exc).__mro__)


def message_of(value: Any) -> str:
    """A value as the result's one-line message: a string as it is, anything else as JSON; cut short."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def task_params(spec: TaskSettings, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """A message's params checked again on the worker (a message need not come from `dts dispatch`): only
    declared params, each obeying the default rule and its choices: and patterns: (else CallFailed, not
    retried); and the retry delays so far, which travel beside them."""
    params = dict(kwargs)
    delays = list(params.pop(DELAYS_KEY, None) or [])
    for key, value in params.items():
        problem = "is not a declared param" if key not in spec.params else param_rule_problem(spec, key, value)
        if problem is None and isinstance(value, str):
            problem = param_problem(value)
        if problem:
            raise CallFailed(f"param {key} {problem} (got {excerpt(str(value))}); not run, not retried")
    return params, delays


def run_call(task, name: str, settings: Settings, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Body of a task of your own: its callable with the params (declared defaults, then the dispatch's), a
    retryable exception retried with backoff, any other failing at once with its type and message."""
    spec, policy = settings.tasks[name], settings.retry_for(name)
    params, delays = task_params(spec, kwargs)
    attempt = task.request.retries
    started_at, t0 = datetime.now(UTC), time.perf_counter()
    try:
        value = load_callable(spec.call)(**{**spec.params, **params})
    except SoftTimeLimitExceeded:
        raise TimeLimitError(
            f"{name} exceeded soft time limit of {soft_limit_of(task) or 0:g}s "
            f"(stopped after {time.perf_counter() - t0:.2f}s); not retried"
        ) from None
    except CallImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: retried or failed, never a worker crash
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        if not retryable(exc, spec.retry_on):
            raise CallFailed(f"{why}; not retried") from None
        if attempt >= policy.max_retries:
            raise CallFailed(
                f"{why}; gave up after {attempt + 1} attempts (max_retries={policy.max_retries})"
            ) from None
        raise retry_later(task, exc, delays, policy, DELAYS_KEY) from None
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise NotJSON(f"{name} returned a value that is not JSON-serialisable ({excerpt(str(exc), 200)})") from None
    return envelope(task, spec, message_of(value), delays, started_at, t0, value=value)
