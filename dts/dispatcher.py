"""One dispatch round: send every task at once, then collect each result under one deadline.

outcomes, total = dispatch_round(settings, timeout=60, overrides={}, announce=print)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from dts.config import Settings
from dts.reports import TaskOutcome, label, success

log = logging.getLogger("dts.dispatch")


def send_order(settings: Settings, overrides: dict[str, Any]) -> list[str]:
    """Longest expected task first, so that the task that bounds the total starts first."""
    duration = overrides.get("duration")
    return sorted(settings.tasks, key=lambda name: -(settings.tasks[name].duration if duration is None else duration))


def collect(settings: Settings, name: str, res, deadline: float, timeout: float) -> TaskOutcome:
    """Wait for one result until the deadline; a missing or failed result becomes an outcome too."""
    pool = settings.pool_for_task(name).name
    try:
        value = res.get(timeout=max(0.01, deadline - time.monotonic()), propagate=False)
    except CeleryTimeout:
        return TaskOutcome(name, res.id, pool,
                           error=f"no result within {timeout:g}s (task {res.id} is still queued or running; state {res.state})")  # fmt: skip
    if res.successful():
        return success(name, res.id, pool, value)
    return TaskOutcome(name, res.id, pool, error=f"{type(value).__name__}: {value}")


def dispatch_round(settings: Settings, tasks: dict, timeout: float, overrides: dict[str, Any],
                   announce: Callable[[str], None]) -> tuple[list[TaskOutcome], float]:  # fmt: skip
    """Send every task, then collect every result under one deadline. Returns outcomes and total time."""
    t0 = time.perf_counter()
    sent = {name: tasks[name].apply_async(kwargs=overrides) for name in send_order(settings, overrides)}
    for name, res in sorted(sent.items()):
        announce(f"{label(name)} sent with ID: {res.id}")
        log.info("sent %s id=%s queue=%s", name, res.id, settings.tasks[name].queue)
    announce("Waiting for results...")
    deadline = time.monotonic() + timeout
    outcomes = [collect(settings, name, res, deadline, timeout) for name, res in sorted(sent.items())]
    return outcomes, time.perf_counter() - t0
