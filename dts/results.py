"""Result files: every dispatch and load test leaves `results/<kind>-<UTC timestamp>.json` (README,
"Result files", documents the schema), written atomically so a crash never leaves half a file.

    path = output_path("dispatch", args.output, args.no_save)   # None: --no-save
    save(path, "dispatch", report.to_json())
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dts.config import results_dir
from dts.errors import CliError, ExitCode
from dts.files import atomic_write
from dts.reports import SCHEMA_VERSION


def default_name(kind: str, now: datetime) -> str:
    """'dispatch-20261125T120102.345Z.json' (UTC, milliseconds: runs a second apart never collide)."""
    return f"{kind}-{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z.json"


def check_writable(path: Path, hint: str = "") -> Path:
    """CliError(exit 2) unless `path` can be written: not a directory, its folder exists (made) and is writable."""
    if path.is_dir():
        raise CliError(f"{path} is a directory: give a file name, e.g. {path / 'run.json'}", ExitCode.USAGE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {path.parent} ({exc.strerror}){hint}", ExitCode.USAGE) from None
    if not os.access(path.parent, os.W_OK):
        raise CliError(f"cannot write {path}: its folder is not writable{hint}", ExitCode.USAGE)
    return path


def output_path(kind: str, output: Path | None, no_save: bool, now: datetime | None = None) -> Path | None:
    """Where this run's result file goes, checked before the run (not after, when results would be lost)."""
    if no_save:
        return None
    path = output or results_dir() / default_name(kind, now or datetime.now(UTC))
    return check_writable(path, "; pass --output PATH or --no-save")


class Stream:
    """A list of a result file written item by item, never all in memory (a load's samples): wraps an
    iterable of JSON values, read once, each written on a line of its own."""

    def __init__(self, items: Iterable[Any]):
        self.items = items


def save(path: Path | None, kind: str, body: dict[str, Any]) -> None:
    """Write {schema, kind, created_at, **body} to a temp file beside `path`, then rename it into place."""
    if path is None:
        return
    doc = {"schema": SCHEMA_VERSION, "kind": kind, "created_at": datetime.now(UTC).isoformat(), **body}
    with atomic_write(path) as out:
        write_json(out, doc)


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
