"""JSON documents: the schema version every result file carries, a result file's envelope, and the writer
that streams a long list (a load's samples) one item at a time instead of building it in memory.

    doc = document("dispatch", report.to_json())   # {"schema": 3, "kind": ..., "created_at": ..., **body}
    write_json(out, doc)                             # json.dump(doc, out, indent=2); a Stream item by item
    body = {"samples": Stream(s.to_json() for s in table)}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

SCHEMA_VERSION = 3  # 3: a task's `state` (succeeded | failed | unknown); load: broker_lost, pools_lost


def document(kind: str, body: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A result file's document: {schema, kind, created_at (UTC, ISO 8601), **body}."""
    created_at = (now or datetime.now(UTC)).isoformat()
    return {"schema": SCHEMA_VERSION, "kind": kind, "created_at": created_at, **body}


class Stream:
    """A list of a result file written item by item, never all in memory (a load's samples): wraps an
    iterable of JSON values, read once, each written on a line of its own."""

    def __init__(self, items: Iterable[Any]):
        self.items = items


def write_json(out: IO[str], doc: Any) -> None:
    """json.dump(doc, out, indent=2), except that each Stream in it is written one item at a time."""
    streams: dict[str, Stream] = {}

    def placeholders(value: Any) -> Any:
        if isinstance(value, Stream):
            key = f"\0stream{len(streams)}\0"
            streams[json.dumps(key)] = value
            return key
        if isinstance(value, dict):
            return {k: placeholders(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [placeholders(v) for v in value]
        return value

    text = json.dumps(placeholders(doc), indent=2)
    if not streams:
        out.write(text)
        return
    pos = 0
    for match in re.finditer("|".join(re.escape(k) for k in streams), text):
        out.write(text[pos : match.start()] + "[")
        for n, item in enumerate(streams[match.group()].items):
            out.write(("," if n else "") + "\n  " + json.dumps(item))
        out.write("\n]")
        pos = match.end()
    out.write(text[pos:])
