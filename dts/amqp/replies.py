"""Results that survive the broker, and waits that survive a lost connection.

Each run (a dispatch, a load) gets a reply queue of its own: durable, not auto-deleted, removed by
RabbitMQ after `expires` seconds unused (x-expires), a quorum queue when the task queues are. Tasks are sent with `reply_to=<that queue>`; workers
publish their results there as persistent messages (`result_persistent`, the rpc:// backend), so a broker
restart keeps the results of tasks that ran. The collector consumes the queue (acking results once
recorded, ACK_BATCH at a time with one `multiple` ack, and whatever is pending whenever the queue falls
idle or a wait ends: a result redelivered after a reconnect is recognised and dropped), reconnects when the connection drops, keeps an eye on the task queues' consumers, and stops at
the deadline (within a tenth of a second).

    with ReplyQueue(app) as replies:
        replies.expect(task_id)                     # before sending: a result for an id not expected is dropped
        task_a.apply_async(task_id=task_id, reply_to=replies.name)
        got = replies.collect({task_id}, deadline=time.monotonic() + 60, watch={"queue_a": "worker-a"})
        got.results[task_id]   # the result message: {"task_id", "status", "result", ...}

A result may be read by any call that waits on the connection (a publish's declare, a channel's open), not
only by collect(): expect() each task before it is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from amqp import Message
from celery import states
from kombu import Consumer, Queue
from kombu.exceptions import OperationalError
from kombu.utils.uuid import uuid

from dts.amqp.checks import MAJORITY_PROBE, broker_error, lost_majority, own_channel
from dts.amqp.deadline import BLOCKED, Deadline, bounded, close_quietly, connect
from dts.app.conf import queue_type_of
from dts.errors import CliError, ExitCode
from dts.reports.dispatch_report import failure_reason

log = logging.getLogger("dts.replies")

DRAIN_SLICE = 0.1  # seconds: the longest a wait runs past its deadline is about this
CONSUMER_CHECK = 2.0  # seconds between checks of the task queues' consumers
RECONNECT_PAUSE = 0.25  # seconds between attempts to reach a broker that is away
FINAL_PROBE = 0.2  # seconds: the broker's answer to one question at the deadline (a healthy one: ~1 ms)
STALL_PROBE = 0.5  # seconds without a result before the connection publishes once (see _probe_if_stalled)
ACK_BATCH = 64  # results acked with one basic.ack(multiple): RabbitMQ settles them in one go
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
        if exc["exc_type"] == "CallFailed" and isinstance(args, list | tuple) and args:
            args = args[:1]  # the reason; a command's output is its second argument (failure_output)
        text = ", ".join(str(m) for m in args) if isinstance(args, list | tuple) else str(args)
        return failure_reason(task, str(exc["exc_type"]), args, text)
    return str(exc)


def failure_output(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A failed command task's exit code, output tails and report (CallFailed's second argument), or None."""
    exc = meta.get("result")
    args = exc.get("exc_message") if isinstance(exc, dict) and exc.get("exc_type") == "CallFailed" else None
    return args[1] if isinstance(args, list) and len(args) > 1 and isinstance(args[1], dict) else None


def reply_queue_arguments(app) -> dict[str, str]:
    """`x-queue-type: quorum` when the app's task queues are quorum queues (a cluster): the results of a run
    then survive the loss of the node its reply queue was declared on, as its tasks do. A quorum queue costs
    a Raft group per run (docs/deploy/multi-host.md measures it); classic otherwise."""
    quorum = any(queue_type_of(queue) == "quorum" for queue in app.conf.task_queues or ())
    return {"x-queue-type": "quorum"} if quorum else {}


class ReplyQueue:
    """A run's own durable reply queue and the consumer that collects from it (see the module doc)."""

    def __init__(
        self, app, expires: float = 3600.0, connect_timeout: float = 5.0, keep: bool = True, heartbeat: int = 0
    ):
        self.app, self.connect_timeout, self.keep = app, connect_timeout, keep  # keep: the bodies, else True
        self.heartbeat = heartbeat  # seconds (0: none): a broker silent for two of them ends the wait's connection
        self.blocked = False  # the broker blocks this connection's publishes (RabbitMQ's connection.blocked)
        self.name = f"dts.amqp.replies.{uuid()}"
        self.queue = Queue(
            self.name,
            routing_key=self.name,
            durable=True,
            auto_delete=False,
            expires=expires,
            queue_arguments=reply_queue_arguments(app),
        )
        self.conn = None
        self.consumer = None
        self._expected: set[str] = set()  # keep=False: only those still without a result
        self._done = 0  # keep=False: results received
        self._collected = Collected()
        self._on_result: Callable[[str, dict[str, Any]], None] | None = None
        self._watch: dict[str, str] = {}  # task queue -> pool
        self._no_consumers_since: dict[str, float] = {}
        self._next_check = 0.0
        self._heard = time.monotonic()  # when the reply queue last had a message (or a stall probe was sent)
        self._unacked = None  # the latest result message not acked yet (acking it acks every earlier one)
        self._pending_acks = 0
        probe = app.connection_for_read()
        self.errors = (OSError, OperationalError, *probe.connection_errors, *probe.channel_errors)
        probe.release()

    # -- connection
    def __enter__(self) -> ReplyQueue:
        try:
            self._connect(self.connect_timeout)
        except self.errors as exc:
            why = lost_majority(self.app, MAJORITY_PROBE)  # a cluster without a leader: said as such
            raise (
                CliError(why, ExitCode.BROKER_UNREACHABLE) if why else broker_error(self.app.conf.broker_url, exc)
            ) from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.conn is not None and not self.blocked:  # a blocked connection's requests go unanswered
            with suppress(Exception), bounded(self.conn, Deadline.after(CLEANUP_BOUND)):  # x-expires removes it anyway
                self._ack_pending()
                channel = self.conn.default_channel
                if self.queue.queue_arguments:  # quorum: RabbitMQ refuses if-empty deletes (540), so look first
                    self.consumer.cancel()
                    if channel.queue_declare(queue=self.name, passive=True).message_count == 0:
                        channel.queue_delete(self.name)
                else:  # without waiting for each answer: the close handshake below waits for all of them
                    for tag in list(self.consumer._active_tags.values()):
                        channel.basic_cancel(tag, nowait=True)
                    channel.queue_delete(self.name, if_empty=True, nowait=True)
        self._close(broken=self.blocked)

    def _connect(self, timeout: float) -> None:
        deadline = Deadline.after(max(0.05, timeout))
        # no per-publish confirm wait on this connection: a publisher on it confirms in batches (dts.runs.loadgen)
        conn = connect(
            self.app,
            deadline,
            self.heartbeat,
            on_blocked=self._on_blocked,
            transport_options={"confirm_publish": False},
        )
        try:
            with bounded(conn, deadline):
                self.queue(conn.default_channel).declare()
                channel = conn.default_channel
                consumer = Consumer(channel, [self.queue], callbacks=[self._on_message], no_ack=False, accept=["json"])
                consumer.consume()
        except BaseException:
            close_quietly(conn)
            raise
        self.conn, self.consumer = conn, consumer

    def _on_blocked(self, reason: str | None) -> None:
        """Said at once, not found out at the deadline."""
        self.blocked = reason is not None
        if self.blocked:
            log.warning("%s; waiting until the deadline", BLOCKED)
        else:
            log.warning("broker accepts publishes again")

    def _close(self, broken: bool = False) -> None:
        close_quietly(self.conn, handshake=not broken)
        self.conn = self.consumer = self._unacked = None  # unacked results go back to the queue
        self._pending_acks = 0

    def _on_message(self, body: dict[str, Any], message) -> None:
        self._heard = time.monotonic()
        task_id, status = body.get("task_id"), body.get("status")
        if status in states.READY_STATES and task_id in self._expected and task_id not in self._collected.results:
            if self.keep:
                self._collected.results[task_id] = body
            else:  # streaming: forget the id (a duplicate result is then ignored like any unexpected one)
                self._expected.discard(task_id)
                self._done += 1
            if self._on_result:
                self._on_result(task_id, body)
        elif status in states.READY_STATES:
            log.debug("dropped a result of %s: not expected (or already recorded)", task_id)
        self._unacked = message  # recorded (or a state we do not wait for: RETRY, STARTED); acked in a batch
        self._pending_acks += 1
        if self._pending_acks >= ACK_BATCH:
            self._ack_pending()

    def _ack_before_return(self) -> None:
        if self.conn is not None:
            try:
                self._ack_pending()
            except self.errors:  # the broker keeps them: redelivered to the next consumer, recognised, dropped
                self._close(broken=True)

    def _ack_pending(self) -> None:
        """Ack every result received so far with one basic.ack(multiple=True)."""
        if self._unacked is not None:
            message, self._unacked, self._pending_acks = self._unacked, None, 0
            message.ack(multiple=True)

    # -- the wait
    def expect(self, task_id: str, on_result: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Wait for this task's result too (for a publisher that streams: see pump)."""
        self._expected.add(task_id)
        self._on_result = on_result or self._on_result

    def pump(self, timeout: float = 0.0) -> None:
        """Handle what has arrived on the connection (results, a publisher's confirms), waiting at most
        `timeout`. Connection errors propagate (the caller decides; collect() reconnects)."""
        self.conn.heartbeat_check()
        self._probe_if_stalled()
        try:
            self.conn.drain_events(timeout=timeout)
        except TimeoutError:
            self._ack_pending()  # the queue is idle

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
                self.conn.heartbeat_check()  # sends ours when due; ConnectionForced after two silent intervals
                self._probe_if_stalled()
                self._check_consumers(now, Deadline(deadline))
                self.conn.drain_events(timeout=min(DRAIN_SLICE, max(0.001, deadline - now)))
            except TimeoutError:
                self._ack_pending()  # the queue is idle
                continue
            except self.errors as exc:
                reason = self._why(exc)
                if lost_reason is None:
                    log.warning("broker connection lost (%s); reconnecting until the deadline", reason)
                lost_reason = reason
                self._close(broken=True)
                time.sleep(min(RECONNECT_PAUSE, max(0.0, deadline - time.monotonic())))  # retry pacing
        self._ack_before_return()
        got.broker_lost = self._why_missing(lost_reason) if self._missing(ids) else lost_reason
        got.pools_lost = {pool: queue for queue, pool in self._watch.items() if queue in self._no_consumers_since}
        return got

    def _why_missing(self, lost_reason: str | None) -> str | None:
        """Results still missing at the deadline: the broker's part in it, if it has one."""
        if self.conn is not None and not lost_reason:
            lost_reason = self._probe()  # is the broker still answering?
        # a cluster: the cause, when too few nodes answer, rather than its symptom
        lost_reason = lost_majority(self.app, MAJORITY_PROBE) or lost_reason
        if self.blocked and not lost_reason:
            lost_reason = BLOCKED  # the results cannot come while the broker holds the tasks' publishes
        return lost_reason

    def _probe(self) -> str | None:
        """One round trip, at most FINAL_PROBE seconds: why the broker does not answer, or None if it does."""
        try:
            with bounded(self.conn, Deadline.after(FINAL_PROBE)):
                self.conn.default_channel.queue_declare(queue=self.name, passive=True)
        except self.errors as exc:
            self._close(broken=True)
            return self._why(exc)
        return None

    def _probe_if_stalled(self) -> None:
        """No result for STALL_PROBE seconds: publish an empty message to the reply queue itself (consumed
        and dropped). RabbitMQ tells a connection that it blocks publishers only once it publishes, so
        without this a run whose workers are blocked (their results held by a memory or disk alarm) would
        find out at its deadline instead of at once."""
        now = time.monotonic()
        if now - self._heard < STALL_PROBE or self.blocked:
            return
        self._heard = now
        self.conn.default_channel.basic_publish(Message(b"{}", content_type="application/json"), "", self.name)

    def _why(self, exc: BaseException) -> str:
        """Why the connection was lost, in the words the report uses."""
        if self.blocked:  # a blocked connection's requests go unanswered: the block is the cause
            return BLOCKED
        if "heartbeats missed" in str(exc):  # py-amqp's ConnectionForced from heartbeat_check
            return f"broker stopped answering (no heartbeat for {2 * self.heartbeat:g} s)"
        return _short(exc)

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
