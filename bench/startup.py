"""What a user meets first, measured for `make bench`: the first dispatch after the workers start against
a warm one, and the wall time of the `python dispatch.py` process.

    first_dispatches(lambda: project_workers(...), argv, env, starts=5, run_json=run_json)
    process_wall(argv, env, runs=10)

A fresh start is the pools stopped and started again (what `make up` does), then `dispatch.py --json`
three times: the first is the cold one, the median of the other two the warm one of that start. The seed
scenario's overhead (total - the longest task) is compared, not the total: the tasks' sleeps are the same.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from bench import PROJECT_DIR

WARM_AFTER = 2  # dispatches after the cold one whose median is that start's warm overhead


def first_dispatches(
    workers: Callable[[], AbstractContextManager],
    argv: list[str],
    env: dict[str, str],
    starts: int,
    run_json: Callable[[list[str], dict[str, str]], dict[str, Any]],
) -> dict[str, Any]:
    """Overheads (seconds) of the first dispatch after each of `starts` fresh starts and of the warm ones."""
    cold, warm = [], []
    for _ in range(starts):
        with workers():
            overheads = [run_json(argv, env)["summary"]["overhead"] for _ in range(1 + WARM_AFTER)]
        cold.append(overheads[0])
        warm.append(statistics.median(overheads[1:]))
    return {
        "starts": starts,
        "cold": cold,
        "warm": warm,
        "cold_median": statistics.median(cold),
        "warm_median": statistics.median(warm),
    }


def process_wall(argv: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Wall seconds of `python ARGV` from spawn to exit, `runs` times (stdout to /dev/null, as a pipe
    would take it), after one run not counted. Python as a user's runs it: its bytecode cache written and
    read (PYTHONDONTWRITEBYTECODE, set on some CI machines, would recompile the project's modules each run)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    walls = []
    for n in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *argv], cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{' '.join(argv[:1])} exited {proc.returncode}: {last[:300]}")
        if n:
            walls.append(wall)
    return {"runs": runs, "walls": walls, "median": statistics.median(walls), "min": min(walls), "max": max(walls)}
