"""Dead-letter queues: list, replay, purge the work queues, migrate queues declared without dead-lettering.

    python -m dts.dlq list [--json]                 # what `make dlq` runs: task, id, reason, attempts, time
    python -m dts.dlq replay [--queue Q] [--id ID]  # `make dlq-replay`: back to the work queue, fresh retries
    python -m dts.dlq purge [--yes] [--dead]        # `make purge`: empty the work queues (after a confirmation)
    python -m dts.dlq migrate                       # `make migrate-queues`: redeclare old queues, keep messages

Every work queue Q has a dead-letter queue Q.dead (dts.routing); workers put there what they give up on
(dts.deadletter). Listing does not consume: it gets every message without acknowledging it and closes the
channel, and RabbitMQ puts them back in their places. Replay and migration move a message with a publisher
confirm before acknowledging it where it was: a crash in between leaves a copy in both places, never none.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from amqp import Message
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Queue

from dts import deadletter
from dts.broker import check_broker, own_channel, require_current_queues
from dts.cli import Parser, run_main
from dts.config import Settings, load_settings
from dts.errors import CliError, ExitCode
from dts.routing import CLASSIC, dead_letter_queue_name, declared_queues, queue_type_of, work_queue

PROG = "python -m dts.dlq"
MIGRATING_SUFFIX = ".migrating"
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
)  # fmt: skip  (not user_id: the
# broker refuses a user_id that is not the publisher's own)
EPILOG = """examples:
  python -m dts.dlq list                     every dead letter: time, task, id, attempts, reason
  python -m dts.dlq list --json              the same as one JSON document
  python -m dts.dlq replay                   every dead letter back to its work queue (retries start again)
  python -m dts.dlq replay --queue queue_a --id 3f2c...   one task
  python -m dts.dlq purge                    empty the work queues, after a confirmation (--yes: none)
  python -m dts.dlq purge --dead --yes       the dead-letter queues too
  python -m dts.dlq migrate                  queues declared by an older version: redeclare, messages kept

exit codes: 0 ok, 1 purge declined / migration refused (consumers), 2 bad usage or config, or a queue
            needs `migrate`, 3 broker unreachable, 130 interrupted"""


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the work queue it came from
    task: str
    id: str
    reason: str
    attempts: int | None
    time: str  # ISO 8601, UTC
    worker: str = ""
    copies: int = 1  # > 1 only after a worker died between copying a message and acknowledging it


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
        return DeadLetter(queue=str(headers.get(deadletter.QUEUE) or queue), task=task, id=task_id,
                          reason=str(headers[deadletter.REASON]), attempts=headers.get(deadletter.ATTEMPTS),
                          time=_iso(headers.get(deadletter.FAILED_AT)), worker=str(headers.get(deadletter.WORKER, "")))  # fmt: skip
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    retries = headers.get("retries")
    return DeadLetter(
        queue=str(death.get("queue") or queue), task=task, id=task_id,
        reason=f"{death.get('reason', 'unknown')} by RabbitMQ (no reason recorded: see the worker's log)",
        attempts=int(retries) + 1 if isinstance(retries, int) else None, time=_iso(death.get("time")),
    )  # fmt: skip


def _tag(message: Message) -> int:
    return message.delivery_info["delivery_tag"]


def _depth(conn, queue: str) -> int | None:
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
    count = _depth(conn, dead)
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
                letter = DeadLetter(**{**asdict(letters[key]), "copies": letters[key].copies + 1})
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
    count = _depth(conn, source)
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
            for _ in range(_depth(conn, dead) or 0):  # those there now: a replay that fails again is not looped
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


def _move_back(conn, queue: str) -> str | None:
    aside = queue + MIGRATING_SUFFIX
    if _depth(conn, aside) is None:
        return None
    back = move(conn, aside, queue)
    if _depth(conn, aside) == 0:
        with own_channel(conn) as channel:
            channel.queue_delete(queue=aside, if_empty=True)
    return f"{queue}: {back} message(s) moved back from {aside}"


def migrate(conn, queues) -> list[str]:
    """Redeclare each outdated work queue (declared Queue objects, dts.routing) as configured, its messages
    kept: without dead-lettering (an older version), or of another queue type (broker.queue_type changed;
    then its dead-letter queue too). Each is moved to `Q.migrating`, deleted (only if empty) and declared
    anew, the messages moved back. Refused while Q has consumers. Run again after an interruption, it
    finishes the job (it moves back what is aside)."""
    lines = []
    for declared in queues:
        queue, dead = declared.name, declared.dead_letter_queue()
        kind = queue_type_of(declared)
        touched = False
        if _declare_fails(conn, declared):
            _, consumers = _ready_and_consumers(conn, queue)
            if consumers:
                raise CliError(f"{queue} has {consumers} consumer(s): stop the workers first (`make down`), then run "
                               "`make migrate-queues` again", ExitCode.FAILED)  # fmt: skip
            retyped = _declare_fails(conn, dead)  # Q.dead of another type: its messages are kept too
            if retyped:
                moved = _redeclare(conn, dead.name, dead)
                lines.append(f"{dead.name}: redeclared as a {kind} queue ({moved} message(s) moved aside)")
            if _declare_fails(conn, declared):
                moved = _redeclare(conn, queue, declared)
                how = "with dead-lettering to " + dead.name
                if retyped or kind == "quorum":
                    how = f"as a {kind} queue with dead-lettering to {dead.name}"
                lines.append(f"{queue}: redeclared {how} ({moved} message(s) moved aside)")
            touched = True
        for name in (dead.name, queue):
            back = _move_back(conn, name)
            if back:
                lines.append(back)
                touched = True
        if not touched:
            lines.append(f"{queue}: ok")
    return lines


def _ready_and_consumers(conn, queue: str) -> tuple[int, int]:
    with own_channel(conn) as channel:
        _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
        return ready, consumers


# --------------------------------------------------------------------------- CLI


def render_list(letters: dict[str, list[DeadLetter]]) -> list[str]:
    lines = []
    for queue, items in letters.items():
        dead = dead_letter_queue_name(queue)
        if not items:
            lines.append(f"{dead}: empty")
            continue
        lines.append(f"{dead}: {len(items)} dead letter(s)")
        lines.append(f"  {'TIME':<25} {'TASK':<18} {'ID':<36} {'ATTEMPTS':>8}  REASON")
        for d in items:
            attempts = "-" if d.attempts is None else str(d.attempts)
            copies = f" [{d.copies} copies]" if d.copies > 1 else ""
            when = d.time[:19].replace("T", " ") + "Z" if d.time else "-"
            lines.append(f"  {when:<25} {d.task[:18]:<18} {d.id[:36]:<36} {attempts:>8}  {d.reason}{copies}")
    return lines


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError("refusing to purge without a confirmation: stdin is not a terminal; pass --yes (make purge "
                       "YES=1)", ExitCode.USAGE)  # fmt: skip
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def selected_queues(settings: Settings, names: list[str] | None) -> list[str]:
    for name in names or []:
        if name not in settings.queues:
            raise CliError(f"unknown queue {name!r}: {settings.path.name} declares {', '.join(settings.queues)}",
                           ExitCode.USAGE)  # fmt: skip
    return list(names or settings.queues)


def run(args: argparse.Namespace) -> int:
    from celery_app import app, use_settings

    settings = load_settings(args.config)
    use_settings(settings)
    queues = selected_queues(settings, args.queue)
    check_broker(app, settings.broker.connect_timeout, check_queues=False)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        conn = conn.connection  # the py-amqp connection: channels of our own
        declared = [q for q in declared_queues(settings) if q.name in queues]
        if args.command == "migrate":
            print("\n".join(migrate(conn, declared)))
            return ExitCode.OK
        require_current_queues(conn, declared)
        if args.command == "list":
            letters = {queue: browse(conn, queue) for queue in queues}
            if args.json:
                doc = {q: {"dead_letter_queue": dead_letter_queue_name(q), "count": len(items),
                           "messages": [asdict(d) for d in items]} for q, items in letters.items()}  # fmt: skip
                print(json.dumps({"queues": doc}, indent=2))
            else:
                print("\n".join(render_list(letters)))
            return ExitCode.OK
        if args.command == "replay":
            done = replay(conn, queues, set(args.id) if args.id else None, settings.broker)
            for queue, n in done.items():
                print(f"{dead_letter_queue_name(queue)} -> {queue}: {n} replayed")
            return ExitCode.OK
        targets = queues + ([dead_letter_queue_name(q) for q in queues] if args.dead else [])
        depth = {q: _depth(conn, q) or 0 for q in targets}
        summary = ", ".join(f"{q} ({n})" for q, n in depth.items())
        if not args.yes and not confirm(f"Purge the ready messages of {summary}?"):
            print("not purged")
            return ExitCode.FAILED
        for queue, n in purge(conn, targets).items():
            print(f"{queue}: {n} message(s) purged")
        return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    common.add_argument("--queue", action="append", metavar="Q", help="a work queue (repeatable; default: all)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    parser = Parser(prog=PROG, description="Dead-letter queues: list, replay; purge the work queues; migrate.",
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = sub.add_parser("list", parents=[common], help="every dead letter: time, task, id, attempts, reason")
    show.add_argument("--json", action="store_true", help="one JSON document")
    again = sub.add_parser("replay", parents=[common], help="dead letters back to their work queue")
    again.add_argument("--id", action="append", metavar="TASK_ID", help="only this task id (repeatable)")
    empty = sub.add_parser("purge", parents=[common], help="empty the work queues (asks first)")
    empty.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    empty.add_argument("--dead", action="store_true", help="also empty their dead-letter queues")
    sub.add_parser("migrate", parents=[common], help="redeclare queues declared without dead-lettering")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
