"""The bench the tasks work on: one folder per board under $LAB_DIR (default: a folder in the temporary
directory, which the worker image keeps writable)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def board_dir(board: str) -> Path:
    folder = Path(os.environ.get("LAB_DIR") or Path(tempfile.gettempdir()) / "bench-lab") / board
    folder.mkdir(parents=True, exist_ok=True)
    return folder
