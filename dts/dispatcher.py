"""One dispatch round: send every task at once, then collect each result under one deadline.

outcomes, total = dispatch_round(settings, TASKS, timeout=60, overrides={}, watch=watch)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.utils.uuid import uuid

from dts.config import Settings
from dts.live import TaskWatch
from dts.reports import TaskOutcome, failure_reason, success

log = logging.getLogger("dts.dispatch")
EVENT_GRACE = 0.5  # seconds the live view waits for task events that trail their results


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
    reason = failure_reason(name, type(value).__name__, getattr(value, "args", ()), str(value))
    return TaskOutcome(name, res.id, pool, error=reason)


def dispatch_round(settings: Settings, tasks: dict, timeout: float, overrides: dict[str, Any],
                   watch: TaskWatch | None = None) -> tuple[list[TaskOutcome], float]:  # fmt: skip
    """Send every task, then collect every result under one deadline. Returns outcomes and total time.
    With a watch, each task is announced to it before it is sent (its events may arrive before
    apply_async returns) and, once the results are in, the watch is given the final state of any task
    whose events did not arrive (task events switched off, or lost)."""
    t0 = time.perf_counter()
    ids = {name: uuid() for name in send_order(settings, overrides)}
    for name, task_id in ids.items():
        if watch:
            watch.expect(task_id, name)
    sent = {}
    for name, task_id in ids.items():
        sent[name] = tasks[name].apply_async(kwargs=overrides, task_id=task_id)
        log.info("sent %s id=%s queue=%s", name, task_id, settings.tasks[name].queue)
        if watch and not settings.monitoring.task_events:
            watch.feed({"type": "task-sent", "uuid": task_id, "retries": 0, "queue": settings.tasks[name].queue})
    deadline = time.monotonic() + timeout
    outcomes = [collect(settings, name, res, deadline, timeout) for name, res in sorted(sent.items())]
    total = time.perf_counter() - t0
    if watch:
        settle(settings, watch, outcomes)
    return outcomes, total


def settle(settings: Settings, watch: TaskWatch, outcomes: list[TaskOutcome]) -> None:
    """Give task events a moment to catch up with the results (a worker stores the result before it sends
    task-succeeded), then let the results speak for any task still without a final line."""
    if settings.monitoring.task_events:
        watch.wait_until_finished(EVENT_GRACE)
    late = set(watch.unfinished())
    for o in outcomes:
        if o.task_id in late:
            for event in final_events(settings, o):
                watch.feed(event)
            watch.flush(o.task_id)


def final_events(settings: Settings, o: TaskOutcome) -> list[dict[str, Any]]:
    """What the result says about a task, as the task events that would have said it."""
    sent = {"type": "task-sent", "uuid": o.task_id, "retries": 0, "queue": settings.tasks[o.task].queue}
    if o.result:
        r = o.result
        final = {"type": "task-succeeded", "uuid": o.task_id, "hostname": r.get("worker", ""),
                 "runtime": r.get("execution_time")}  # fmt: skip
    elif o.error and o.error.startswith("no result within"):
        final = {"type": "task-unknown", "uuid": o.task_id, "exception": o.error}
    else:
        final = {"type": "task-failed", "uuid": o.task_id, "exception": o.error}
    return [sent, final]
