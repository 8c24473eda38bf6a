"""What task_a and task_b do: simulated work with fault injection, retries with backoff, and the
result dict every report reads. The tasks in celery_app.py stay thin and call `run_task`."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from dts.config import Settings, TaskSettings
from dts.errors import excerpt
from dts.runtime.retry import backoff_delay

log = logging.getLogger("dts.work")
MESSAGES = {"task_a": "Hello from Task A", "task_b": "Hello from Task B"}


class TransientError(Exception):
    """A failure worth retrying (here: injected by failure_rate / fail_times)."""


class TimeLimitError(Exception):
    """The task ran past its soft time limit (Celery raised SoftTimeLimitExceeded in it): it fails with this
    reason and is not retried. Past the hard limit there is no exception to catch: the worker kills the
    process and reports Celery's TimeLimitExceeded."""


def soft_limit_of(task) -> float | None:
    """The soft time limit this run had: the message's own (apply_async(soft_time_limit=...) or a sender's
    config), else the worker's task attribute (tasks.<name>.soft_time_limit)."""
    _hard, soft = task.request.timelimit or (None, None)
    return soft or task.soft_time_limit


def simulate_work(
    spec: TaskSettings,
    attempt: int,
    duration: float | None,
    failure_rate: float | None,
    fail_times: int,
    rand: Callable[[], float] = random.random,
) -> None:
    """The work itself: sleep `duration`, then maybe raise a TransientError."""
    seconds = spec.duration if duration is None else duration
    if seconds > 0:  # sleep(0) is still a system call: no-op loads measure the workers, not it
        time.sleep(seconds)
    rate = spec.failure_rate if failure_rate is None else failure_rate
    if attempt < fail_times or (rate > 0 and rand() < rate):
        raise TransientError(f"simulated transient failure in {spec.name} (attempt {attempt + 1})")


def unenforced_time_limits(settings: Settings, queues: set[str], execution_pool: str) -> list[str]:
    """Warnings for a worker whose execution pool cannot enforce the time limits of the tasks it serves.
    Celery enforces time limits in the prefork pool only: the parent process sends SIGUSR1 to the child at
    the soft limit and kills it at the hard limit. The threads and solo pools ignore both."""
    if execution_pool == "prefork":
        return []

    def shown(limit: float) -> str:
        return f"{limit:g}s" if limit else "none"

    return [
        f"tasks.{t.name}: time limits (soft_time_limit {shown(t.soft_time_limit)}, time_limit {shown(t.time_limit)}) "
        f"are not enforced by the {execution_pool} execution pool: Celery enforces them in prefork workers only"
        for t in settings.tasks.values()
        if t.queue in queues and (t.soft_time_limit or t.time_limit)
    ]


def connect_time_limit_check(active_settings: Callable[[], Settings]) -> Callable[..., None]:
    """At worker start (logging is set up by then): warn when its execution pool ignores time limits.
    Returns the receiver (connected for good: `weak=False`)."""
    from celery import signals
    from celery.concurrency import ALIASES

    @signals.celeryd_after_setup.connect(weak=False)
    def check(sender=None, instance=None, **_):
        cls = instance.pool_cls
        target = f"{cls.__module__}:{cls.__name__}" if isinstance(cls, type) else str(cls)
        kind = next((alias for alias, t in ALIASES.items() if t == target), target)
        queues = set(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
        for line in unenforced_time_limits(active_settings(), queues, kind):
            log.warning("%s", line)

    return check


WARM_UP_BOUND = 2.0  # seconds: within billiard's 4 s for a new pool process to report for work


def warm_result_channel(app) -> None:
    """Open the connection and channel this process publishes results on (publisher confirms selected),
    so that the first task after a start does not pay the AMQP handshake (~5 ms) inside its run. All of it
    within WARM_UP_BOUND; a broker that does not answer is only logged (the connection dropped): the
    first result publish connects as before."""
    from dts.amqp.deadline import Deadline, bounded, close_quietly

    deadline = Deadline.after(WARM_UP_BOUND)
    with app.producer_pool.acquire(block=True, timeout=WARM_UP_BOUND) as producer:
        conn = producer.connection
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=WARM_UP_BOUND)
            with bounded(conn, deadline):
                producer.channel  # noqa: B018 - kombu opens a producer's channel on first use: open it now
        except Exception as exc:  # noqa: BLE001 - a warm-up never stops a worker
            close_quietly(conn, handshake=False)
            log.warning("result connection not opened ahead of the first task: %s", excerpt(str(exc)))


def connect_warm_up(app) -> Callable[..., None]:
    """Warm the result channel where results are published: in each prefork pool process as it starts,
    in the worker itself for the other pools (solo, threads). Returns the receiver (connected for good)."""
    from celery import signals

    @signals.worker_process_init.connect(weak=False)
    def in_pool_process(**_):
        warm_result_channel(app)

    @signals.worker_ready.connect(weak=False)
    def in_worker(sender=None, **_):
        if type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.prefork":
            warm_result_channel(app)

    return in_pool_process


def run_task(
    task,
    name: str,
    settings: Settings,
    duration: float | None,
    failure_rate: float | None,
    fail_times: int,
    retry_delays: list[float] | None,
) -> dict[str, Any]:
    """Body shared by task_a and task_b: do the work, retry with backoff, return the result dict."""
    spec, policy = settings.tasks[name], settings.retry_for(name)
    attempt = task.request.retries
    delays = list(retry_delays or [])
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        simulate_work(spec, attempt, duration, failure_rate, fail_times)
    except SoftTimeLimitExceeded:
        limit = soft_limit_of(task)
        raise TimeLimitError(
            f"{name} exceeded soft time limit of {limit or 0:g}s (stopped after {time.perf_counter() - t0:.2f}s); "
            "not retried"
        ) from None
    except TransientError as exc:
        if attempt >= policy.max_retries:
            raise TransientError(
                f"{exc}; gave up after {attempt + 1} attempts (max_retries={policy.max_retries})"
            ) from None
        raise retry_later(task, exc, delays, policy, "retry_delays") from None
    return envelope(task, spec, MESSAGES[name], delays, started_at, t0)


def retry_later(task, exc: BaseException, delays: list[float], policy, key: str):
    """The Retry to raise: the next attempt after the backoff delay, the delays so far carried in the
    message's kwargs under `key` (what the result's retry_delays lists)."""
    delay = backoff_delay(task.request.retries, policy)
    kwargs = dict(task.request.kwargs or {}, **{key: [*delays, round(delay, 4)]})
    return task.retry(exc=exc, countdown=delay, kwargs=kwargs, max_retries=policy.max_retries)


_NO_VALUE = object()


def envelope(
    task, spec: TaskSettings, message: str, delays: list[float], started_at: datetime, t0: float, value: Any = _NO_VALUE
) -> dict[str, Any]:
    """The result dict every task returns and every report reads (with `value`: a task of your own's)."""
    delivery = task.request.delivery_info or {}
    return {
        "message": message,
        **({} if value is _NO_VALUE else {"value": value}),
        "task": spec.name,
        "task_id": task.request.id,
        "queue": delivery.get("routing_key") or spec.queue,
        "worker": task.request.hostname,
        "retries": task.request.retries,
        "retry_delays": delays,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "execution_time": round(time.perf_counter() - t0, 6),
    }
