"""The one atomic file write: a temp file beside the target, renamed into place only when complete, so a
reader (or a crash) never sees a half-written file.

    with atomic_write(path) as f:           # a text file; f.write(...) as often as needed
        f.write(text)
    write_atomic(path, text, mode=0o600)    # the same in one call, readable by its owner only
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: Path, mode: int = 0o666, binary: bool = False) -> Iterator[IO]:
    """Open a temp file beside `path` (created with `mode`, less the umask); on a clean exit rename it
    onto `path`, on an error remove it and leave `path` as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes, mode: int = 0o666) -> None:
    """Write all of `data` (text or bytes) to `path` atomically."""
    with atomic_write(path, mode, binary=isinstance(data, bytes)) as f:
        f.write(data)


def shown(path: Path) -> str:
    """A file as the user is told about it: relative to the current folder when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# what the package carries beside its code: the worker and broker image recipes, the compose template, the
# starter config, the pinned requirements (in a checkout, symlinks to the repository's top-level files)
DATA_DIR = Path(__file__).resolve().parent / "data"
