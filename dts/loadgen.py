"""The load generator: the task plan, publishing through one producer, collecting results as they come.

samples, wall, got = run_load(app, tasks, order, kwargs, timeout, progress, watch)
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from celery import states

from dts.config import Settings
from dts.live import LoadProgress
from dts.replies import Collected, ReplyQueue, error_text
from dts.reports import Sample


def task_plan(tasks: int, mix: float) -> dict[str, int]:
    """2 × tasks in all; `mix` is the share of task_a (0.5 = as many of each, like the seed)."""
    total = 2 * tasks
    n_a = round(total * mix)
    return {"task_a": n_a, "task_b": total - n_a}


def interleave(plan: dict[str, int]) -> list[str]:
    """The send order: types spread evenly (a, b, a, b, ...) so neither pool waits for the other's tasks."""
    total = sum(plan.values())
    keyed = [(i * total / n, name) for name, n in plan.items() for i in range(n)]
    return [name for _, name in sorted(keyed)]


def live_slots(app, settings: Settings) -> dict[str, int]:
    """Worker slots per pool, from the workers themselves: each live worker's max-concurrency, counted for
    the pool whose queue it consumes (inspect active_queues), whatever its name."""
    inspect = app.control.inspect(timeout=2.0)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    slots = {pool: 0 for pool in settings.pools}
    for worker, consumed in queues.items():
        concurrency = int(stats.get(worker, {}).get("pool", {}).get("max-concurrency", 1))
        pools = {settings.pool_for_queue(q["name"]).name for q in consumed if q["name"] in settings.queues}
        for pool in pools:
            slots[pool] += concurrency
    return slots


def publish(app, tasks: dict, order: list[str], kwargs: dict[str, dict[str, Any]], reply_to: str,
            errors: tuple[type[BaseException], ...]) -> tuple[list[Sample], str | None]:  # fmt: skip
    """Send every task through one producer (one connection, one channel); kwargs per task type; results to
    `reply_to`. Returns the samples sent and, if the broker went away while publishing, why it stopped."""
    sent: list[Sample] = []
    try:
        with app.producer_or_acquire() as producer:
            for name in order:
                sent_at = time.time()
                res = tasks[name].apply_async(kwargs=kwargs[name], producer=producer, reply_to=reply_to)
                sent.append(Sample(name, res.id, sent_at))
    except errors as exc:  # after kombu's publish retries
        return (
            sent,
            f"publishing stopped after {len(sent)} of {len(order)} tasks: {type(exc).__name__}: {str(exc)[:200]}",
        )
    return sent, None


def filled(sample: Sample, meta: dict[str, Any] | None, received: float | None, why_missing: str) -> Sample:
    """A sample with its outcome: the result, the failure, or unknown (no result by the deadline)."""
    if meta is None:
        return replace(sample, error=why_missing, unknown=True)
    if meta.get("status") == states.SUCCESS:
        return replace(sample, received_at=received, result=meta.get("result"))
    return replace(sample, received_at=received, error=error_text(meta, sample.task))


def run_load(app, tasks: dict, order: list[str], kwargs: dict[str, dict[str, Any]], timeout: float,
             progress: LoadProgress, watch: dict[str, str], connect_timeout: float = 5.0,
             ) -> tuple[list[Sample], float, Collected]:  # fmt: skip
    """Publish the load, then collect every result under one deadline (reconnecting if the broker drops,
    noticing a pool that loses its consumers). Returns the samples, the wall time and what the wait saw."""
    t0 = time.perf_counter()
    received: dict[str, float] = {}

    def on_result(task_id: str, meta: dict[str, Any]) -> None:
        received[task_id] = time.time()
        progress.step()

    with ReplyQueue(app, connect_timeout=connect_timeout) as replies:
        sent, stopped = publish(app, tasks, order, kwargs, replies.name, replies.errors)
        got = replies.collect({s.task_id for s in sent}, time.monotonic() + timeout, on_result, watch)
    wall = time.perf_counter() - t0
    if stopped and not got.broker_lost:
        got.broker_lost = stopped
    why = (f"no result within {timeout:g}s: " + (f"the broker connection was lost ({got.broker_lost})"
           if got.broker_lost else "still queued or running"))  # fmt: skip
    samples = [filled(s, got.results.get(s.task_id), received.get(s.task_id), why) for s in sent]
    return samples, wall, got
