"""Dead-letter and work-queue operations on the broker, for `dts dlq` (dts/cli/dlq.py):
browse the dead letters, replay them, purge queues, migrate queues declared without dead-lettering.

    conn = app.connection_for_write().connection          # a connected py-amqp connection: channels of our own
    letters = browse(conn, "queue_a")                      # [DeadLetter]: nothing consumed
    replay(conn, ["queue_a"], ids=None, broker=settings.broker);  purge(conn, ["queue_a"])
    steps = migrate(conn, declared_queues(settings))      # [MigrationStep], rendered by dts.reports.deadletter_report

Every work queue Q has a dead-letter queue Q.dead (dts.app.conf); workers put there what they give up on
(dts.runtime.deadletter). Browsing does not consume: it gets every message without acknowledging it and closes the
channel, and RabbitMQ puts them back in their places. Replay and migration move a message with a publisher
confirm before acknowledging it where it was: a crash in between leaves a copy in both places, never none.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from amqp import Message
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Queue

from dts import deadletter
from dts.amqp.checks import own_channel
from dts.errors import CliError, ExitCode
from dts.reports.deadletter_report import DeadLetter, MigrationStep
from dts.app.conf import CLASSIC, dead_letter_queue_name, queue_type_of, work_queue

MIGRATING_SUFFIX = ".migrating"
# what a moved message keeps (not user_id: the broker refuses a user_id that is not the publisher's own)
COPIED_PROPERTIES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "app_id",
)


def _iso(value) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(value or "")


def describe(queue: str, message: Message) -> DeadLetter:
    """One dead letter from its headers: the worker's x-dts-* headers, else RabbitMQ's own x-death."""
    headers = message.properties.get("application_headers") or {}
    props = message.properties
    task_id = str(headers.get("id") or props.get("message_id") or props.get("correlation_id") or "-")
    task = str(headers.get("task") or "-")
    if deadletter.REASON in headers:
        return DeadLetter(
            queue=str(headers.get(deadletter.QUEUE) or queue),
            task=task,
            id=task_id,
            reason=str(headers[deadletter.REASON]),
            attempts=headers.get(deadletter.ATTEMPTS),
            time=_iso(headers.get(deadletter.FAILED_AT)),
            worker=str(headers.get(deadletter.WORKER, "")),
        )
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    retries = headers.get("retries")
    return DeadLetter(
        queue=str(death.get("queue") or queue),
        task=task,
        id=task_id,
        reason=f"{death.get('reason', 'unknown')} by RabbitMQ (no reason recorded: see the worker's log)",
        attempts=int(retries) + 1 if isinstance(retries, int) else None,
        time=_iso(death.get("time")),
    )


def _tag(message: Message) -> int:
    return message.delivery_info["delivery_tag"]


def depth(conn, queue: str) -> int | None:
    """Messages ready in `queue`, or None when it does not exist (on a channel of its own: a 404 closes it)."""
    with own_channel(conn) as channel:
        try:
            return channel.queue_declare(queue=queue, passive=True)[1]
        except NotFound:
            return None


def browse(conn, queue: str) -> list[DeadLetter]:
    """Every message of `queue.dead`, without consuming it: got unacknowledged, then the channel is closed
    and RabbitMQ requeues them in their original order (they are only marked redelivered)."""
    dead = dead_letter_queue_name(queue)
    count = depth(conn, dead)
    if not count:
        return []
    letters: dict[str, DeadLetter] = {}
    with own_channel(conn) as channel:
        for _ in range(count):
            message = channel.basic_get(queue=dead, no_ack=False)
            if message is None:
                break
            letter = describe(queue, message)
            key = letter.id if letter.id != "-" else f"#{len(letters)}"
            if key in letters:
                letter = replace(letters[key], copies=letters[key].copies + 1)
            letters[key] = letter
    return list(letters.values())


def _copy(message: Message, headers: dict) -> Message:
    props = {k: message.properties[k] for k in COPIED_PROPERTIES if message.properties.get(k) is not None}
    return Message(message.body, application_headers=headers, **props)


def _replay_headers(headers: dict) -> dict:
    """The task's own headers: without the dead-letter ones, and with a fresh retry budget."""
    kept = {
        k: v for k, v in headers.items() if not k.startswith(("x-dts-", "x-death", "x-first-death", "x-last-death"))
    }
    if "retries" in kept:
        kept["retries"] = 0
    return kept


def move(conn, source: str, target: str) -> int:
    """Move the messages in `source` now to `target` through the default exchange: each published with a
    confirm, then acknowledged (a crash in between leaves it in both, never in neither)."""
    count = depth(conn, source)
    moved = 0
    with own_channel(conn) as channel:
        for _ in range(count or 0):
            message = channel.basic_get(queue=source, no_ack=False)
            if message is None:
                break
            headers = dict(message.properties.get("application_headers") or {})
            channel.basic_publish_confirm(_copy(message, headers), exchange="", routing_key=target)
            channel.basic_ack(_tag(message))
            moved += 1
    return moved


def replay(conn, queues: list[str], ids: set[str] | None = None, broker=None) -> dict[str, int]:
    """Re-publish the dead letters of `queues` (only `ids`, if given) to their work queue, with a confirm
    before each acknowledgement; a task id is replayed once (an extra copy is dropped)."""
    replayed = {}
    for queue in queues:
        with own_channel(conn) as declare_channel:
            # the target exists, with its dead-letter arguments
            work_queue(queue, broker or CLASSIC).bind(declare_channel).declare()
        dead, seen, moved = dead_letter_queue_name(queue), set(), 0
        with own_channel(conn) as channel:
            for _ in range(depth(conn, dead) or 0):  # those there now: a replay that fails again is not looped
                message = channel.basic_get(queue=dead, no_ack=False)
                if message is None:
                    break
                headers = dict(message.properties.get("application_headers") or {})
                task_id = headers.get("id")
                if ids is not None and task_id not in ids:
                    continue  # left unacknowledged: back in place when the channel closes
                if task_id is not None and task_id in seen:
                    channel.basic_ack(_tag(message))  # a second copy of a task replayed just now
                    continue
                seen.add(task_id)
                channel.basic_publish_confirm(_copy(message, _replay_headers(headers)), exchange="", routing_key=queue)
                channel.basic_ack(_tag(message))
                moved += 1
        replayed[queue] = moved
    return replayed


def purge(conn, queues: list[str]) -> dict[str, int]:
    """Drop the ready messages of `queues` (unacknowledged ones — tasks running now — are not touched)."""
    with own_channel(conn) as channel:
        return {queue: channel.queue_purge(queue) or 0 for queue in queues}


# --------------------------------------------------------------------------- migration


def _declare_fails(conn, queue) -> bool:
    """Declaring `queue` (a kombu Queue) fails with PRECONDITION_FAILED: it exists with other arguments."""
    with own_channel(conn) as channel:
        try:
            queue.bind(channel).declare()
        except PreconditionFailed:
            return True
    return False


def _redeclare(conn, queue, plain: Queue) -> int:
    """Move `queue`'s messages aside to `queue.migrating`, delete it (only if empty and unused) and declare
    it anew with `plain` (its declared form, a kombu Queue). Returns how many messages were moved aside."""
    aside = queue + MIGRATING_SUFFIX
    with own_channel(conn) as channel:
        channel.queue_declare(queue=aside, durable=True, auto_delete=False)
    moved = move(conn, queue, aside)
    with own_channel(conn) as channel:
        channel.queue_delete(queue=queue, if_empty=True, if_unused=True)
    if _declare_fails(conn, plain):
        raise CliError(f"{queue} could not be redeclared; its messages are in {aside}")
    return moved


def _move_back(conn, queue: str) -> MigrationStep | None:
    aside = queue + MIGRATING_SUFFIX
    if depth(conn, aside) is None:
        return None
    back = move(conn, aside, queue)
    if depth(conn, aside) == 0:
        with own_channel(conn) as channel:
            channel.queue_delete(queue=aside, if_empty=True)
    return MigrationStep(queue, "moved_back", back, aside=aside)


def migrate(conn, queues) -> list[MigrationStep]:
    """Redeclare each outdated work queue (declared Queue objects, dts.app.conf) as configured, its messages
    kept: without dead-lettering (an older version), or of another queue type (broker.queue_type changed;
    then its dead-letter queue too). Each is moved to `Q.migrating`, deleted (only if empty) and declared
    anew, the messages moved back. Refused while Q has consumers. Run again after an interruption, it
    finishes the job (it moves back what is aside)."""
    steps = []
    for declared in queues:
        queue, dead = declared.name, declared.dead_letter_queue()
        kind = queue_type_of(declared)
        touched = False
        if _declare_fails(conn, declared):
            _, consumers = _ready_and_consumers(conn, queue)
            if consumers:
                raise CliError(
                    f"{queue} has {consumers} consumer(s): stop the workers first (`make down`), then run "
                    "`make migrate-queues` again",
                    ExitCode.FAILED,
                )
            retyped = _declare_fails(conn, dead)  # Q.dead of another type: its messages are kept too
            if retyped:
                moved = _redeclare(conn, dead.name, dead)
                steps.append(MigrationStep(dead.name, "retyped", moved, how=kind))
            if _declare_fails(conn, declared):
                moved = _redeclare(conn, queue, declared)
                how = "with dead-lettering to " + dead.name
                if retyped or kind == "quorum":
                    how = f"as a {kind} queue with dead-lettering to {dead.name}"
                steps.append(MigrationStep(queue, "redeclared", moved, how=how))
            touched = True
        for name in (dead.name, queue):
            back = _move_back(conn, name)
            if back:
                steps.append(back)
                touched = True
        if not touched:
            steps.append(MigrationStep(queue, "ok"))
    return steps


def _ready_and_consumers(conn, queue: str) -> tuple[int, int]:
    with own_channel(conn) as channel:
        _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
        return ready, consumers
