"""Dispatch one task_a and one task_b concurrently and report results, timings, retries and isolation.
The same command as `dts dispatch` (dts/cli/dispatch.py), run from this repository's checkout.

python dispatch.py                      # default config (test-config.yml)
python dispatch.py --fail-rate 0.5      # inject transient failures to watch the backoff
python dispatch.py --json               # one JSON document on stdout
python dispatch.py --quiet              # only the results, one line per task
"""

import gc

if __name__ == "__main__":
    gc.disable()  # no collections while ~600 modules load (~12 ms of the wall); the run freezes them, re-enables

from dts.cli import exit_now
from dts.cli.dispatch import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    exit_now(main())
