"""The dead-letters report: each work queue's dead letters (task, id, reason, attempts, time), and what a
replay, a purge or a queue migration did, as the text lines and the JSON document `dts dlq` prints.

    letters = {queue: queue_ops.browse(conn, queue) for queue in queues}
    print("\\n".join(render_list(letters)))      # or json.dumps(list_json(letters), indent=2)
    print("\\n".join(render_migration(queue_ops.migrate(conn, declared))))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dts.app.conf import dead_letter_queue_name
from dts.reports.console import fit, table_lines


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


@dataclass(frozen=True)
class MigrationStep:
    """What a migration did to one queue: `retyped` (a dead-letter queue redeclared as another queue type),
    `redeclared` (a work queue redeclared as `how`), `moved_back` (its messages back from `aside`), or `ok`."""

    queue: str
    action: str  # retyped | redeclared | moved_back | ok
    moved: int = 0  # messages moved aside (retyped, redeclared) or back (moved_back)
    how: str = ""  # retyped: the queue type; redeclared: "with dead-lettering to Q.dead", ...
    aside: str = ""  # moved_back: the queue they were kept in


LIST_COLUMNS = ("TIME", "TASK", "ID", "ATTEMPTS")


def render_list(letters: dict[str, list[DeadLetter]]) -> list[str]:
    """Per work queue: its dead-letter queue, empty or a table of its dead letters, each with its reason
    on the lines under it (indented)."""
    lines = []
    for queue, items in letters.items():
        dead = dead_letter_queue_name(queue)
        if not items:
            lines.append(f"{dead}: empty")
            continue
        lines.append(f"{dead}: {len(items)} dead letter(s)")
        rows = [
            (
                d.time[:19].replace("T", " ") + "Z" if d.time else "-",
                d.task[:18],
                d.id[:36],
                "-" if d.attempts is None else str(d.attempts),
            )
            for d in items
        ]
        header, *table = table_lines(LIST_COLUMNS, rows, right={3})
        lines.append(header)
        for row, d in zip(table, items, strict=True):
            copies = f" [{d.copies} copies]" if d.copies > 1 else ""
            lines += [row, *fit(f"  {d.reason}{copies}", hang=2)]
    return lines


def list_json(letters: dict[str, list[DeadLetter]]) -> dict[str, Any]:
    """`list --json`: {"queues": {queue: {dead_letter_queue, count, messages}}}."""
    queues = {
        queue: {
            "dead_letter_queue": dead_letter_queue_name(queue),
            "count": len(items),
            "messages": [asdict(d) for d in items],
        }
        for queue, items in letters.items()
    }
    return {"queues": queues}


def render_replay(replayed: dict[str, int]) -> list[str]:
    return [f"{dead_letter_queue_name(queue)} -> {queue}: {n} replayed" for queue, n in replayed.items()]


def purge_question(depth: dict[str, int]) -> str:
    """What `purge` asks before it empties the queues (their ready messages now)."""
    return f"Purge the ready messages of {', '.join(f'{q} ({n})' for q, n in depth.items())}?"


NOT_PURGED = "not purged"


def render_purge(purged: dict[str, int]) -> list[str]:
    return [f"{queue}: {n} message(s) purged" for queue, n in purged.items()]


def render_migration(steps: list[MigrationStep]) -> list[str]:
    """A line per step (a long one going on, indented, on the next)."""
    lines = []
    for s in steps:
        if s.action == "retyped":
            lines.append(f"{s.queue}: redeclared as a {s.how} queue ({s.moved} message(s) moved aside)")
        elif s.action == "redeclared":
            lines.append(f"{s.queue}: redeclared {s.how} ({s.moved} message(s) moved aside)")
        elif s.action == "moved_back":
            lines.append(f"{s.queue}: {s.moved} message(s) moved back from {s.aside}")
        else:
            lines.append(f"{s.queue}: ok")
    return [part for line in lines for part in fit(line, hang=2)]
