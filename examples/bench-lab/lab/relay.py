"""The clean-up: switch a board's power relay (here: a state file in its folder).

python3 lab/relay.py BOARD on|off"""

from __future__ import annotations

import sys

from bench import board_dir

if __name__ == "__main__":
    board, state = sys.argv[1:3]
    (board_dir(board) / "power").write_text(state + "\n")
    print(f"{board} power {state}")
