"""Worker side of dead-lettering: every message a worker gives up on lands in its queue's `Q.dead`, once,
with the reason, the attempts and the time in its headers (docs/operations/dead-letters.md).

Two hooks, both in the worker's main process, where the message itself is at hand:

- `DeadLetterRequest` (the tasks' `Request` class): a task that fails for good (retries exhausted, wrong
  arguments, any exception, a time limit) is acknowledged by Celery after its result (the failure) went
  to the client. Just before that ack, the message is copied to `Q.dlx` with `x-dts-*` headers (publisher
  confirms). If that copy cannot be published, the message is rejected instead and RabbitMQ dead-letters
  it (`x-death`: reason `rejected`, no exception text) — never lost, never twice in the queue.
- `DeadLetterConsumer` (`worker_consumer`): messages no worker can process — unknown task name, invalid
  message, undecodable body (Celery would ack and drop it), not a task message at all — the same way.

The trade-off (copy + ack rather than RabbitMQ's own reject): the reason travels with the message, at
the price of an at-least-once window: a worker killed between the confirmed copy and the ack gets the
message redelivered; if it fails again, `Q.dead` holds two copies with the same task id. `dts dlq`
shows and replays a task id once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Ignore, Reject, Retry, Terminated, WorkerLostError
from celery.worker.consumer import Consumer
from celery.worker.request import Request

from dts.app.conf import dead_letter_exchange, dead_letter_queue, queue_type_of

logger = logging.getLogger("dts.deadletter")

REASON = "x-dts-reason"
ATTEMPTS = "x-dts-attempts"
FAILED_AT = "x-dts-failed-at"
QUEUE = "x-dts-queue"
WORKER = "x-dts-worker"
HEADERS = (REASON, ATTEMPTS, FAILED_AT, QUEUE, WORKER)
NOT_A_FAILURE = (Retry, Ignore, Reject, Terminated, WorkerLostError, SystemExit, KeyboardInterrupt, MemoryError)
MAX_REASON = 500


def one_line(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exception_reason(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def source_queue(message) -> str:
    """The work queue a message came from: the routing key (each queue has its own direct exchange)."""
    info = message.delivery_info or {}
    return info.get("routing_key") or info.get("exchange") or ""


def dead_letter_queue_of(app, queue: str):
    """`queue.dead` as the app declares it (of the work queue's type: broker.queue_type)."""
    declared = app.amqp.queues.get(queue)
    return dead_letter_queue(queue, queue_type_of(declared) if declared is not None else "classic")


def publish_dead_letter(app, message, reason: str, attempts: int, worker: str) -> bool:
    """Copy `message` (body and properties unchanged) to its queue's dead-letter exchange with the reason
    headers; True once the broker confirmed it."""
    queue = source_queue(message)
    if not queue:
        return False
    headers = dict(message.headers or {})
    headers.update(
        {
            REASON: one_line(reason),
            ATTEMPTS: int(attempts),
            FAILED_AT: datetime.now(UTC).isoformat(),
            QUEUE: queue,
            WORKER: worker or "",
        }
    )
    props = message.properties or {}
    extra = {k: props[k] for k in ("correlation_id", "reply_to", "priority", "message_id") if props.get(k) is not None}
    try:
        with app.producer_pool.acquire(block=True, timeout=10) as producer:
            producer.publish(
                message.body,
                exchange=dead_letter_exchange(queue),
                routing_key=queue,
                headers=headers,
                content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary",
                delivery_mode=2,
                declare=[dead_letter_queue_of(app, queue)],
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                **extra,
            )
        return True
    except Exception as exc:  # noqa: BLE001 - the caller falls back to a reject: RabbitMQ dead-letters it
        logger.error(
            "could not copy message %s to %s (%r): rejecting it instead",
            headers.get("id"),
            dead_letter_exchange(queue),
            exc,
        )
        return False


class DeadLetterRequest(Request):
    """A task request whose final failure sends the message to `Q.dead` with the exception as the reason."""

    _dead_letter_reason: str | None = None

    def on_timeout(self, soft, timeout):
        """In the worker's main process: past the hard limit billiard kills the pool process, not what a
        command task started (its own process group): that group is killed here (dts.runtime.commands)."""
        if not soft:
            from dts.runtime.commands import kill_recorded

            kill_recorded(self.id)
        return super().on_timeout(soft, timeout)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = exc_info.exception
        exc = exc.exc if isinstance(exc, ExceptionWithTraceback) else exc
        if isinstance(exc, WorkerLostError | Terminated):  # the pool process died: killed, revoked, crashed
            from dts.runtime.commands import kill_recorded

            kill_recorded(self.id)
        if not isinstance(exc, NOT_A_FAILURE):
            self._dead_letter_reason = exception_reason(exc)
        try:
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        finally:
            self._dead_letter_reason = None

    def acknowledge(self):
        reason, self._dead_letter_reason = self._dead_letter_reason, None
        if reason is not None and not self.acknowledged:
            attempts = int(self._request_dict.get("retries") or 0) + 1
            if not publish_dead_letter(self.task.app, self._message, reason, attempts, self._hostname):
                return self.reject(requeue=False)  # RabbitMQ dead-letters it (x-death) instead
        return super().acknowledge()


class _SettleToDeadLetters:
    """A message whose reject (Celery's answer to what it cannot process) becomes copy + ack."""

    def __init__(self, consumer: DeadLetterConsumer, message, reason: str):
        self._consumer, self._message, self._reason = consumer, message, reason

    def __getattr__(self, name):
        return getattr(self._message, name)

    def reject_log_error(self, log, errors, requeue=False):
        self._consumer.dead_letter(self._message, self._reason)


class DeadLetterConsumer(Consumer):
    """Celery's consumer, but what it cannot process goes to `Q.dead` with the reason (not dropped), and
    without Celery's native delayed delivery step (below)."""

    class Blueprint(Consumer.Blueprint):
        # Celery's DelayedDelivery step (on with quorum queues) binds topic exchanges for countdowns; ours are
        # direct exchanges, which it does not support (it logs so), and at every reconnect it sets itself up
        # on each broker URL in turn, 3 retries 1 + 3 + 5 s apart: a killed node of a cluster held the worker's
        # consumer for ~17 s before it took a task again (measured; docs/deploy/multi-host.md).
        default_steps = tuple(s for s in Consumer.Blueprint.default_steps if not s.endswith(":DelayedDelivery"))

    def dead_letter(self, message, reason: str) -> None:
        if publish_dead_letter(self.app, message, reason, 0, self.hostname):
            message.ack_log_error(logger, self.connection_errors)
        else:
            message.reject_log_error(logger, self.connection_errors)  # RabbitMQ dead-letters it

    def create_task_handler(self, *args, **kwargs):
        """Celery's handler, but a message whose JSON body is not [args, kwargs, embed] is dead-lettered:
        Celery 5.7 raises out of its consumer on one (ValueError in Request.__init__), which stops the
        worker, and the redelivered message then stops the next one."""
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message):
            try:
                return handle(message)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                if message.acknowledged:
                    raise
                logger.error("invalid task message %s: %s", (message.headers or {}).get("id"), exception_reason(exc))
                self.dead_letter(message, f"invalid task message: {exception_reason(exc)}")

        return on_task_received

    def on_unknown_message(self, body, message):
        reason = "not a Celery task message (no task header)"
        return super().on_unknown_message(body, _SettleToDeadLetters(self, message, reason))

    def on_unknown_task(self, body, message, exc):
        name = (message.headers or {}).get("task", "?")
        reason = f"unknown task {name!r}: not registered on the workers of this queue"
        return super().on_unknown_task(body, _SettleToDeadLetters(self, message, reason), exc)

    def on_invalid_task(self, body, message, exc):
        reason = f"invalid task message: {exception_reason(exc)}"
        return super().on_invalid_task(body, _SettleToDeadLetters(self, message, reason), exc)

    def on_decode_error(self, message, exc):
        """Celery logs and acks (drops) a message it cannot decode; it goes to the dead letters instead."""
        logger.critical("cannot decode message (content type %r): %s", message.content_type, exception_reason(exc))
        self.dead_letter(message, f"undecodable body ({message.content_type}): {exception_reason(exc)}")
