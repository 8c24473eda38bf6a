"""The load generator: the task plan, and a run that streams: tasks are published (confirmed in batches)
while their results come back on the run's reply queue, with a bounded number in flight.

samples, wall, got = run_load(app, settings, order, kwargs, timeout, progress, watch)
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import amqp
from celery import states
from celery.utils.nodenames import anon_nodename
from kombu.serialization import dumps
from kombu.utils.uuid import uuid

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


def live_slots(app, settings: Settings, workers: int | None = None) -> dict[str, int]:
    """Worker slots per pool, from the workers themselves: each live worker's max-concurrency, counted for
    the pool whose queue it consumes (inspect active_queues), whatever its name. `workers`: how many
    replies to expect (the queues' consumer count): the broadcast then returns as soon as they are in,
    not after its whole timeout."""
    inspect = app.control.inspect(timeout=2.0, limit=workers or None)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
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


class Confirms:
    """Publisher confirms as they arrive: delivery tags 1, 2, ... settled one by one or `multiple` (every
    tag up to the given one); a nack settles too, and counts as refused."""

    def __init__(self):
        self.upto, self.above, self.refused = 0, set(), 0

    def settled(self) -> int:
        return self.upto + len(self.above)

    def settle(self, delivery_tag: int, multiple: bool) -> int:
        """Returns how many publishes this settles that were not settled before."""
        before = self.settled()
        if multiple:
            self.upto = max(self.upto, delivery_tag)
            self.above = {tag for tag in self.above if tag > self.upto}
        elif delivery_tag > self.upto:
            self.above.add(delivery_tag)
        return self.settled() - before


class TaskPublisher:
    """Publishes Celery task messages (protocol 2, JSON, persistent) on a channel in confirm mode, without
    waiting for each confirm: RabbitMQ's acks arrive while the connection is pumped, and wait_confirms()
    waits for the rest. The same message `apply_async` builds (app.amqp.as_task_v2), minus its per-task
    costs: no reply-queue declare, no confirm round trip per message, no task-sent event."""

    def __init__(self, app, settings: Settings, conn, reply_to: str):
        self.app, self.reply_to = app, reply_to
        self.routes = {name: (t.queue, t.time_limit or None, t.soft_time_limit or None)
                       for name, t in settings.tasks.items()}  # fmt: skip
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.published = 0
        self.confirms = Confirms()
        self.origin = anon_nodename()

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirms.settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirms.refused += self.confirms.settle(delivery_tag, multiple)  # settled, but not taken: lost

    def publish(self, name: str, task_id: str, kwargs: dict[str, Any]) -> None:
        queue, hard, soft = self.routes[name]
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id, f"celery_app.{name}", args=(), kwargs=kwargs, reply_to=self.reply_to, time_limit=hard,
            soft_time_limit=soft, origin=self.origin)  # fmt: skip
        content_type, encoding, data = dumps(body, serializer="json")
        message = amqp.Message(data, content_type=content_type, content_encoding=encoding, application_headers=headers,
                               delivery_mode=2, **properties)  # fmt: skip
        self.channel.basic_publish(message, exchange="", routing_key=queue)  # direct queue: the default exchange
        self.published += 1

    def unconfirmed(self) -> int:
        """Published and not yet settled by the broker (acked or refused)."""
        return self.published - self.confirms.settled()


def filled(sample: Sample, meta: dict[str, Any] | None, received: float | None, why_missing: str) -> Sample:
    """A sample with its outcome: the result, the failure, or unknown (no result by the deadline)."""
    if meta is None:
        return replace(sample, error=why_missing, unknown=True)
    if meta.get("status") == states.SUCCESS:
        r = meta.get("result") or {}
        kept = {k: r.get(k) for k in ("worker", "started_at", "execution_time", "retries")}  # what reports read
        return replace(sample, received_at=received, result=kept)
    return replace(sample, received_at=received, error=error_text(meta, sample.task))


def run_load(app, settings: Settings, order: list[str], kwargs: dict[str, dict[str, Any]], timeout: float,
             progress: LoadProgress, watch: dict[str, str], window: int = WINDOW,
             ) -> tuple[list[Sample], float, Collected]:  # fmt: skip
    """Stream the load: publish while results come back, at most `window` tasks in flight, then wait for
    the rest under one deadline (reconnecting if the broker drops, noticing a pool that loses its
    consumers). Returns the samples in send order, the wall time and what the wait saw."""
    t0 = time.perf_counter()
    samples: dict[str, Sample] = {}

    def on_result(task_id: str, meta: dict[str, Any]) -> None:
        samples[task_id] = filled(samples[task_id], meta, time.time(), "")
        progress.step()

    with ReplyQueue(app, connect_timeout=settings.broker.connect_timeout, keep=False) as replies:
        stopped = None
        try:
            publisher = TaskPublisher(app, settings, replies.conn, replies.name)
            for n, name in enumerate(order):
                while publisher.published - replies.done() >= window:
                    replies.pump(timeout=0.05)
                task_id = uuid()
                samples[task_id] = Sample(name, task_id, time.time())
                replies.expect(task_id, on_result)
                publisher.publish(name, task_id, kwargs[name])
                if n % PUMP_EVERY == 0:
                    replies.pump(timeout=PUMP_SLICE)
            confirm_deadline = time.monotonic() + settings.broker.connect_timeout
            while publisher.unconfirmed() and time.monotonic() < confirm_deadline:
                replies.pump(timeout=0.05)
            if publisher.confirms.refused or publisher.unconfirmed():
                stopped = (
                    f"the broker did not confirm {publisher.confirms.refused + publisher.unconfirmed()} publish(es)"
                )
                log.warning("%s", stopped)
        except replies.errors as exc:
            sent = len(samples)
            stopped = f"publishing stopped after {sent} of {len(order)} tasks: {type(exc).__name__}: {str(exc)[:200]}"
            replies._close()  # collect() reconnects
        got = replies.collect(set(samples), time.monotonic() + timeout, on_result, watch)
    wall = time.perf_counter() - t0
    if stopped and not got.broker_lost:
        got.broker_lost = stopped
    why = (f"no result within {timeout:g}s: " + (f"the broker connection was lost ({got.broker_lost})"
           if got.broker_lost else "still queued or running"))  # fmt: skip
    return [s if s.received_at or s.error else filled(s, None, None, why) for s in samples.values()], wall, got
