"""Results that survive the broker, and waits that survive a lost connection.

Each run (a dispatch, a load) gets a reply queue of its own: durable, not auto-deleted, removed by
RabbitMQ after `expires` seconds unused (x-expires). Tasks are sent with `reply_to=<that queue>`; workers
publish their results there as persistent messages (`result_persistent`, the rpc:// backend), so a broker
restart keeps the results of tasks that ran. The collector consumes the queue (acking each result once
recorded), reconnects when the connection drops, keeps an eye on the task queues' consumers, and stops at
the deadline (within a tenth of a second).

    with ReplyQueue(app) as replies:
        res = task_a.apply_async(reply_to=replies.name)
        got = replies.collect({res.id}, deadline=time.monotonic() + 60, watch={"queue_a": "worker-a"})
        got.results[res.id]   # the result message: {"task_id", "status", "result", ...}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from celery import states
from kombu import Consumer, Queue
from kombu.exceptions import OperationalError
from kombu.utils.uuid import uuid

from dts.broker import broker_error, own_channel
from dts.deadline import Deadline, bounded, close_quietly
from dts.reports.dispatch import failure_reason

log = logging.getLogger("dts.replies")

DRAIN_SLICE = 0.1  # seconds: the longest a wait runs past its deadline is about this
CONSUMER_CHECK = 2.0  # seconds between checks of the task queues' consumers
RECONNECT_PAUSE = 0.25  # seconds between attempts to reach a broker that is away
CLEANUP_BOUND = 0.3  # seconds the reply queue's clean-up may take (a broker that does not answer: skipped)


@dataclass
class Collected:
    """What a wait found: results by task id, and what went wrong on the way."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    broker_lost: str | None = None  # why, when the connection was down at the deadline
    reconnects: int = 0
    pools_lost: dict[str, str] = field(default_factory=dict)  # pool -> its queue without consumers at the end


def error_text(meta: dict[str, Any], task: str) -> str:
    """'TransientError: boom' from a FAILURE result message (an exception serialised as a dict)."""
    exc = meta.get("result")
    if isinstance(exc, dict) and "exc_type" in exc:
        args = exc.get("exc_message")
        text = ", ".join(str(m) for m in args) if isinstance(args, list | tuple) else str(args)
        return failure_reason(task, str(exc["exc_type"]), args, text)
    return str(exc)


class ReplyQueue:
    """A run's own durable reply queue and the consumer that collects from it (see the module doc)."""

    def __init__(self, app, expires: float = 3600.0, connect_timeout: float = 5.0, keep: bool = True):
        self.app, self.connect_timeout, self.keep = app, connect_timeout, keep  # keep: the bodies, else True
        self.name = f"dts.replies.{uuid()}"
        self.queue = Queue(self.name, routing_key=self.name, durable=True, auto_delete=False, expires=expires)
        self.conn = None
        self.consumer = None
        self._expected: set[str] = set()  # keep=False: only those still without a result
        self._done = 0  # keep=False: results received
        self._collected = Collected()
        self._on_result: Callable[[str, dict[str, Any]], None] | None = None
        self._watch: dict[str, str] = {}  # task queue -> pool
        self._no_consumers_since: dict[str, float] = {}
        self._next_check = 0.0
        probe = app.connection_for_read()
        self.errors = (OSError, OperationalError, *probe.connection_errors, *probe.channel_errors)
        probe.release()

    # -- connection
    def __enter__(self) -> ReplyQueue:
        try:
            self._connect(self.connect_timeout)
        except self.errors as exc:
            raise broker_error(self.app.conf.broker_url, exc) from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.conn is not None:
            with suppress(Exception), bounded(self.conn, Deadline.after(CLEANUP_BOUND)):  # x-expires removes it anyway
                self.consumer.cancel()
                self.conn.default_channel.queue_delete(self.name, if_empty=True)
        self._close()

    def _connect(self, timeout: float) -> None:
        # no per-publish confirm wait on this connection: a publisher on it confirms in batches (dts.loadgen)
        conn = self.app.connection_for_read(
            connect_timeout=max(0.05, timeout), transport_options={"confirm_publish": False}
        )
        deadline = Deadline.after(max(0.05, timeout))
        try:  # one attempt: the wait loop paces the retries (kombu's own would sleep 2 s first)
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=max(0.05, timeout))
            with bounded(conn, deadline):
                self.queue(conn.default_channel).declare()
                channel = conn.default_channel
                consumer = Consumer(channel, [self.queue], callbacks=[self._on_message], no_ack=False, accept=["json"])
                consumer.consume()
        except BaseException:
            close_quietly(conn)
            raise
        self.conn, self.consumer = conn, consumer

    def _close(self, broken: bool = False) -> None:
        close_quietly(self.conn, handshake=not broken)
        self.conn = self.consumer = None

    def _on_message(self, body: dict[str, Any], message) -> None:
        task_id, status = body.get("task_id"), body.get("status")
        if status in states.READY_STATES and task_id in self._expected and task_id not in self._collected.results:
            if self.keep:
                self._collected.results[task_id] = body
            else:  # streaming: forget the id (a duplicate result is then ignored like any unexpected one)
                self._expected.discard(task_id)
                self._done += 1
            if self._on_result:
                self._on_result(task_id, body)
        message.ack()  # recorded (or a state we do not wait for: RETRY, STARTED)

    # -- the wait
    def expect(self, task_id: str, on_result: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Wait for this task's result too (for a publisher that streams: see pump)."""
        self._expected.add(task_id)
        self._on_result = on_result or self._on_result

    def pump(self, timeout: float = 0.0) -> None:
        """Handle what has arrived on the connection (results, a publisher's confirms), waiting at most
        `timeout`. Connection errors propagate (the caller decides; collect() reconnects)."""
        try:
            self.conn.drain_events(timeout=timeout)
        except TimeoutError:
            pass

    def done(self) -> int:
        """How many of the expected results have arrived."""
        return len(self._collected.results) if self.keep else self._done

    def _missing(self, ids: set[str] | None) -> bool:
        """Whether a result is still missing: of `ids`, or of every task expected (None)."""
        if self.keep:
            return not (self._expected if ids is None else ids) <= self._collected.results.keys()
        return bool(self._expected if ids is None else ids & self._expected)

    def collect(
        self,
        ids: set[str] | None,
        deadline: float,
        on_result: Callable[[str, dict[str, Any]], None] | None = None,
        watch: dict[str, str] | None = None,
    ) -> Collected:
        """Consume results until every id (None: every task expected) has one or the deadline passes.
        With keep=False (streaming) `results` stays empty: on_result gets each one. `watch`: task queue -> pool,
        whose consumers are checked every CONSUMER_CHECK seconds (a pool at zero is logged, and reported
        in `pools_lost` if still at zero at the end)."""
        if ids is not None:
            ids = set(ids)
            if self.keep:  # streaming (keep=False) announces each task with expect(), and forgets it once answered
                self._expected |= ids
        self._on_result, self._watch = on_result, dict(watch or {})
        if not self._next_check:  # the CLIs checked the consumers just before sending: the first look can wait
            self._next_check = time.monotonic() + CONSUMER_CHECK
        got, lost_reason = self._collected, None
        while self._missing(ids):
            now = time.monotonic()
            if now >= deadline:
                break
            try:
                if self.conn is None:
                    self._connect(min(self.connect_timeout, deadline - now))
                    got.reconnects += 1
                    log.warning("broker connection back; collecting the results kept in %s", self.name)
                    lost_reason = None
                self._check_consumers(now, Deadline(deadline))
                self.conn.drain_events(timeout=min(DRAIN_SLICE, max(0.001, deadline - now)))
            except TimeoutError:
                continue
            except self.errors as exc:
                if lost_reason is None:
                    log.warning("broker connection lost (%s); reconnecting until the deadline", _short(exc))
                lost_reason = _short(exc)
                self._close(broken=True)
                time.sleep(min(RECONNECT_PAUSE, max(0.0, deadline - time.monotonic())))  # retry pacing
        got.broker_lost = lost_reason
        got.pools_lost = {pool: queue for queue, pool in self._watch.items() if queue in self._no_consumers_since}
        return got

    def _check_consumers(self, now: float, deadline: Deadline) -> None:
        if not self._watch or now < self._next_check:
            return
        self._next_check = now + CONSUMER_CHECK
        with bounded(self.conn, deadline), own_channel(self.conn) as channel:
            for queue, pool in self._watch.items():
                _, _, consumers = channel.queue_declare(queue=queue, passive=True)
                if consumers == 0 and queue not in self._no_consumers_since:
                    self._no_consumers_since[queue] = now
                    log.warning(
                        "%s has no consumer any more: pool %s lost its workers; waiting for it to come back",
                        queue,
                        pool,
                    )
                elif consumers and queue in self._no_consumers_since:
                    del self._no_consumers_since[queue]
                    log.warning("%s has %d consumer(s) again (pool %s)", queue, consumers, pool)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
