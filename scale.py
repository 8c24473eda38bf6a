"""Start, stop, resize and inspect the worker pools on their engine (local processes, docker compose, swarm).
The same commands as `dts up|down|scale|status|health|logs|...` (dts/cli/pools.py), from this checkout.

python scale.py up                  # every pool at its declared replicas; waits for ping
python scale.py set worker-a 3      # resize one pool (a queue name works too: set queue_a 3)
python scale.py status              # per pool: workers, slots, consumers and queue depth
python scale.py down                # warm shutdown of every worker
"""

import sys

from dts.cli.pools import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
