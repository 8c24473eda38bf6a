"""Load test: send TASKS of each task type, collect results as they complete, and report what the
current pool sizes buy. The same command as `dts load-test` (dts/cli/load_test.py), from this checkout.

    python load_test.py --tasks 20                  # 20 task_a + 20 task_b on the running pools
    python load_test.py --tasks 40 --sweep 1,2,4,8  # rescale both pools to each size, same load each time
"""

import sys

from dts.cli.load_test import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
