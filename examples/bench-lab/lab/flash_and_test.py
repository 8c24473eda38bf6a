"""A command task: flash BOARD, then run the pytest selection SELECT against it, writing JUnit to REPORT.

    python3 lab/flash_and_test.py BOARD SELECT REPORT

Exit 75 when the board is busy (retry_on_exit: [75]); otherwise pytest's own exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import board_dir

BUSY = 75


def main(board: str, select: str, report: str) -> int:
    if board == "rev-busy":
        print(f"{board} is held by another job", file=sys.stderr)
        return BUSY
    (board_dir(board) / "flash.img").write_text("firmware-1.2.bin\n")
    print(f"flashed {board}")
    tests = Path(__file__).resolve().parent / "board_tests"
    args = [str(tests), "-q", "-p", "no:cacheprovider", "-k", select, f"--junitxml={report}", f"--board={board}"]
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
