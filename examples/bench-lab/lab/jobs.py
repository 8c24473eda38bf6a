"""Tasks of your own that are Python callables (`call: jobs:flash` in test-config.yml)."""

from __future__ import annotations

from bench import board_dir


class BoardBusy(Exception):
    """Another job holds the board: worth another attempt (retry_on: [jobs.BoardBusy])."""


def flash(board: str, image: str) -> dict:
    """Write `image` onto the board (here: a file in its folder); the result's value."""
    if board == "rev-busy":
        raise BoardBusy(f"{board} is held by another job")
    target = board_dir(board) / "flash.img"
    target.write_text(f"{image}\n")
    return {"board": board, "image": image, "bytes": target.stat().st_size}
