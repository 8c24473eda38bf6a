"""The load generator: the task plan, publishing through one producer, collecting results as they come.

samples, wall = run_load(app, tasks, plan, kwargs, timeout, progress)
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import ResultSet

from dts.config import Settings
from dts.live import LoadProgress
from dts.reports import Sample, failure_reason


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


def publish(app, tasks: dict, order: list[str], kwargs: dict[str, dict[str, Any]]) -> list[tuple[Sample, Any]]:
    """Send every task through one producer (one connection, one channel); kwargs per task type."""
    sent = []
    with app.producer_or_acquire() as producer:
        for name in order:
            sent_at = time.time()
            res = tasks[name].apply_async(kwargs=kwargs[name], producer=producer)
            sent.append((Sample(name, res.id, sent_at), res))
    return sent


def _filled(sample: Sample, meta: dict[str, Any]) -> Sample:
    received = time.time()
    if meta.get("status") == "SUCCESS":
        return replace(sample, received_at=received, result=meta.get("result"))
    exc = meta.get("result")
    error = (failure_reason(sample.task, str(exc.get("exc_type")), exc.get("exc_message"), str(exc.get("exc_message")))
             if isinstance(exc, dict) else str(exc))  # fmt: skip
    return replace(sample, received_at=received, error=error)


def collect(sent: list[tuple[Sample, Any]], timeout: float, progress: LoadProgress) -> list[Sample]:
    """Each sample with its outcome, as results arrive (any order), until all are in or the timeout passes."""
    samples = {sample.task_id: sample for sample, _ in sent}
    done: dict[str, Sample] = {}
    try:
        for task_id, meta in ResultSet([res for _, res in sent]).iter_native(timeout=timeout, interval=0.1):
            if task_id in samples and task_id not in done:
                done[task_id] = _filled(samples[task_id], meta)
                progress.step()
    except CeleryTimeout:
        pass
    missing = f"no result within {timeout:g}s (still queued or running)"
    return [done.get(tid) or replace(s, error=missing) for tid, s in samples.items()]


def run_load(app, tasks: dict, order: list[str], kwargs: dict[str, dict[str, Any]], timeout: float,
             progress: LoadProgress) -> tuple[list[Sample], float]:  # fmt: skip
    t0 = time.perf_counter()
    sent = publish(app, tasks, order, kwargs)
    samples = collect(sent, timeout, progress)
    return samples, time.perf_counter() - t0
