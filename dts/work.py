"""What task_a and task_b do: simulated work with fault injection, retries with backoff, and the
result dict every report reads. The tasks in celery_app.py stay thin and call `run_task`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dts.config import Settings, TaskSettings
from dts.retry import backoff_delay

MESSAGES = {"task_a": "Hello from Task A", "task_b": "Hello from Task B"}


class TransientError(Exception):
    """A failure worth retrying (here: injected by failure_rate / fail_times)."""


def simulate_work(
    spec: TaskSettings,
    attempt: int,
    duration: float | None,
    failure_rate: float | None,
    fail_times: int,
    rand: Callable[[], float] = random.random,
) -> None:
    """The work itself: sleep `duration`, then maybe raise a TransientError."""
    time.sleep(spec.duration if duration is None else duration)
    rate = spec.failure_rate if failure_rate is None else failure_rate
    if attempt < fail_times or (rate > 0 and rand() < rate):
        raise TransientError(f"simulated transient failure in {spec.name} (attempt {attempt + 1})")


def run_task(task, name: str, settings: Settings, duration: float | None, failure_rate: float | None,
             fail_times: int, retry_delays: list[float] | None) -> dict[str, Any]:  # fmt: skip
    """Body shared by task_a and task_b: do the work, retry with backoff, return the result dict."""
    spec, policy = settings.tasks[name], settings.retry
    attempt = task.request.retries
    delays = list(retry_delays or [])
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        simulate_work(spec, attempt, duration, failure_rate, fail_times)
    except TransientError as exc:
        if attempt >= policy.max_retries:
            raise TransientError(
                f"{exc}; gave up after {attempt + 1} attempts (max_retries={policy.max_retries})"
            ) from None
        delay = backoff_delay(attempt, policy)
        kwargs = dict(task.request.kwargs or {}, retry_delays=[*delays, round(delay, 4)])
        raise task.retry(exc=exc, countdown=delay, kwargs=kwargs, max_retries=policy.max_retries) from None
    delivery = task.request.delivery_info or {}
    return {
        "message": MESSAGES[name],
        "task": name,
        "task_id": task.request.id,
        "queue": delivery.get("routing_key") or spec.queue,
        "worker": task.request.hostname,
        "retries": attempt,
        "retry_delays": delays,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "execution_time": round(time.perf_counter() - t0, 6),
    }
