"""The load generator: the task plan, and a run that streams: tasks are published (confirmed in batches)
while their results come back on the run's reply queue, with a bounded number in flight.

    order = interleave(task_plan(20, {"task_a": 1, "task_b": 1}))   # ['task_a', 'task_b', 'task_a', ...]
    slots = live_slots(app, settings, workers=2)           # {'worker-a': 1, 'worker-b': 1}
    samples, wall, got = run_load(app, settings, order, kwargs, timeout, progress, watch)   # samples: a SampleTable
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import states
from kombu.utils.uuid import uuid

from dts.amqp.control import ask_workers
from dts.amqp.deadline import BLOCKED, BrokerSilent, Deadline, bounded, session, tighten
from dts.amqp.publish import TaskPublisher
from dts.amqp.replies import Collected, ReplyQueue, error_text
from dts.config import Settings
from dts.runs.live import LoadProgress
from dts.runs.samples import SampleTable

SLOTS_WAIT = 2.0  # seconds the slot count waits for a worker's reply (an answering one: a round trip)


def task_plan(tasks: int, weights: dict[str, float]) -> dict[str, int]:
    """How many of each task type: `tasks` x the number of types in all, split by the weights (positive
    numbers, or a share and its complement), each count rounded so that they add up to the total exactly
    (the running sum rounded: a type gets its share +- 1). Two types weighted mix and 1 - mix: 2 x tasks,
    round(2 x tasks x mix) of the first, like the seed's --mix."""
    total, whole = tasks * len(weights), sum(weights.values())
    plan, running, given = {}, 0.0, 0
    for name, weight in weights.items():
        running += weight
        upto = round(total * running / whole) if running < whole else total
        plan[name], given = upto - given, upto
    return plan


def interleave(plan: dict[str, int]) -> list[str]:
    """The send order: types spread evenly (a, b, a, b, ...) so neither pool waits for the other's tasks."""
    total = sum(plan.values())
    keyed = [(i * total / n, name) for name, n in plan.items() for i in range(n)]
    return [name for _, name in sorted(keyed)]


def live_slots(app, settings: Settings, deadline: Deadline, workers: int | None = None) -> dict[str, int]:
    """Worker slots per pool, from the workers themselves: each live worker's max-concurrency, counted for
    the pool whose queue it consumes (inspect active_queues), whatever its name. `workers`: how many
    replies to expect (the queues' consumer count): the question then returns as soon as they are in,
    not after its whole wait. A broker silent until `deadline`: BrokerSilent."""
    with session(app, deadline) as conn:
        limit = workers or None
        stats = ask_workers(app, conn, "stats", deadline, limit=limit, wait=SLOTS_WAIT)
        queues = ask_workers(app, conn, "active_queues", deadline, limit=limit, wait=SLOTS_WAIT)
    slots = {pool: 0 for pool in settings.pools}
    for worker, consumed in queues.items():
        concurrency = int(stats.get(worker, {}).get("pool", {}).get("max-concurrency", 1))
        pools = {settings.pool_for_queue(q["name"]).name for q in consumed if q["name"] in settings.queues}
        for pool in pools:
            slots[pool] += concurrency
    return slots


log = logging.getLogger("dts.loadgen")
WINDOW = 2000  # tasks published and not yet answered: bounds the broker's queue and this process's state
PUMP_EVERY = 64  # publishes between two looks at the connection (confirms, results)
PUMP_SLICE = 0.0001  # seconds: a look, not a wait


def expire(deadline: Deadline, waiting_for: str) -> None:
    """BrokerSilent once the deadline has passed while publishing waits for `waiting_for`."""
    if deadline.expired():
        raise BrokerSilent(f"broker stopped answering (no {waiting_for} before the deadline)")


def record(table: SampleTable, row: int, meta: dict[str, Any], received: float) -> None:
    """A task's outcome from its result message: succeeded (what reports read of its return value) or failed."""
    if meta.get("status") == states.SUCCESS:
        table.succeeded(row, received, meta.get("result") or {})
    else:
        table.failed(row, received, error_text(meta, table.task_names[table.task[row]]))


def run_load(
    app,
    settings: Settings,
    order: list[str],
    kwargs: dict[str, dict[str, Any]],
    timeout: float,
    progress: LoadProgress,
    watch: dict[str, str],
    window: int = WINDOW,
) -> tuple[SampleTable, float, Collected]:
    """Stream the load: publish while results come back, at most `window` tasks in flight, then wait for
    the rest; all of it under one deadline, `timeout` from now, however the broker behaves (reconnecting
    if it drops, ending at the deadline if it stops answering, noticing a pool that loses its consumers).
    Returns every task in send order (a SampleTable), the wall time and what the wait saw. Only the tasks
    in flight are looked up by id; the rest of the state is the table's columns."""
    t0, deadline = time.perf_counter(), Deadline.after(timeout)
    table = SampleTable(settings.tasks)
    in_flight: dict[str, int] = {}  # task id -> row, until its result arrives

    def on_result(task_id: str, meta: dict[str, Any]) -> None:
        record(table, in_flight.pop(task_id), meta, time.time())
        progress.step()

    def add(name: str, task_id: str) -> None:
        in_flight[task_id] = table.add(name, task_id, time.time())
        replies.expect(task_id, on_result)

    with ReplyQueue(
        app, connect_timeout=settings.broker.connect_timeout, keep=False, heartbeat=settings.broker.heartbeat
    ) as replies:
        stopped = publish_all(app, settings, replies, order, kwargs, deadline, window, add)
        got = replies.collect(None, deadline.at, on_result, watch)
    wall = time.perf_counter() - t0
    if stopped and not got.broker_lost:
        got.broker_lost = stopped
    lost = f"the broker connection was lost ({got.broker_lost})" if got.broker_lost else "still queued or running"
    why = f"no result within {timeout:g}s: {lost}"
    for row in sorted(in_flight.values()):
        table.unknown(row, why)
    return table, wall, got


def publish_all(
    app,
    settings: Settings,
    replies: ReplyQueue,
    order: list[str],
    kwargs: dict[str, dict[str, Any]],
    deadline: Deadline,
    window: int,
    add: Callable[[str, str], None],
) -> str | None:
    """Publish every task of `order` (announced with add(name, id) first), at most `window` unanswered,
    and wait for their confirms; every publish, drain and confirm wait ends by `deadline`. Returns why
    publishing stopped short (the broker refused, did not confirm, or was lost), or None."""
    added = 0
    try:
        with bounded(replies.conn, deadline):
            publisher = TaskPublisher(app, settings, replies)
            for n, name in enumerate(order):
                while publisher.published - replies.done() >= window:
                    expire(deadline, "results")
                    replies.pump(timeout=0.05)
                task_id = uuid()
                add(name, task_id)
                added += 1
                publisher.publish(name, task_id, kwargs[name])
                if n % PUMP_EVERY == 0:
                    expire(deadline, "publisher confirms")
                    tighten(replies.conn, deadline)
                    replies.pump(timeout=PUMP_SLICE)
            confirm_deadline = deadline.sooner(settings.broker.connect_timeout)
            while publisher.unconfirmed() and not confirm_deadline.expired():
                replies.pump(timeout=min(0.05, confirm_deadline.remaining()))
    except replies.errors as exc:
        replies._close(broken=True)  # collect() reconnects
        why = BLOCKED if replies.blocked else f"{type(exc).__name__}: {str(exc)[:200]}"
        return f"publishing stopped after {added} of {len(order)} tasks: {why}"
    unconfirmed = publisher.confirms.refused + publisher.unconfirmed()
    if not unconfirmed:
        return None
    log.warning("the broker did not confirm %d publish(es)", unconfirmed)
    return f"the broker did not confirm {unconfirmed} publish(es)"
