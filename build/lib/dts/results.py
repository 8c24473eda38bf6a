"""Result files: every dispatch and load test leaves `results/<kind>-<UTC timestamp>.json`
(docs/reference/result-files.md lists its keys), written atomically so a crash never leaves half a file. The
document itself (schema, kind, created_at, the body) is dts.reports.documents'.

    path = output_path("dispatch", args.output, args.no_save, project)   # None: --no-save; checked first
    save(path, "dispatch", report.to_json())
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dts.config import results_dir
from dts.errors import CliError, ExitCode
from dts.files import atomic_write
from dts.reports.documents import document, write_json


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


def output_path(
    kind: str, output: Path | None, no_save: bool, project: Path, now: datetime | None = None
) -> Path | None:
    """Where this run's result file goes (default: the project's results/), checked before the run (not
    after, when results would be lost)."""
    if no_save:
        return None
    path = output or results_dir(project) / default_name(kind, now or datetime.now(UTC))
    return check_writable(path, "; pass --output PATH or --no-save")


def save(path: Path | None, kind: str, body: dict[str, Any]) -> None:
    """Write {schema, kind, created_at, **body} to a temp file beside `path`, then rename it into place."""
    if path is None:
        return
    doc = document(kind, body)
    with atomic_write(path) as out:
        write_json(out, doc)
