"""A worker's node name and command line, built from its pool's declaration: the one place (pure).
Every engine starts workers through `launch_argv` (the `python -m dts worker` entry point), which execs
`worker_argv`, so a pool's queues and options follow the config everywhere.

    nodename("worker-a")        # 'worker-a@%h' (Celery expands %h to the host name)
    pool_of_node("worker-a@3f") # 'worker-a'
    launch_argv("worker-a")     # ['python', '-m', 'dts', 'worker', 'worker-a']
"""

from __future__ import annotations

from dts.config import PoolSettings

HOST = "%h"  # Celery expands it to the host name (a container's hostname is its id)
WORKER_COMMAND = ("-m", "dts", "worker")  # the entry point every engine runs: `python -m dts worker POOL`
APP_MODULE = "dts.app"  # the module `celery -A` loads in a worker (the app for $DTS_CONFIG)


def nodename(pool: str, host: str = HOST) -> str:
    """'worker-a@<host>': the part before '@' is the pool, on every engine; the host part makes it unique
    (a container's hostname, or '<hostname>-<n>' for the n-th local worker of a pool)."""
    return f"{pool}@{host}"


def pool_of_node(node: str) -> str:
    """'worker-a@3f2c1d' -> 'worker-a' (the inverse of nodename: no guessing)."""
    return node.split("@", 1)[0]


def worker_argv(pool: PoolSettings, host: str = HOST, log_format: str = "text") -> list[str]:
    """The one worker command line. With JSON logs (LOG_FORMAT=json) celery runs with -q: no start-up
    banner (printed, not logged), so every line the worker writes is a JSON log record."""
    options = [
        ("-Q", ",".join(pool.queues)),
        ("-n", nodename(pool.name, host)),
        ("--pool", pool.execution_pool),
        ("--concurrency", str(pool.concurrency)),
        ("--prefetch-multiplier", str(pool.prefetch_multiplier)),
    ]
    quiet = ["-q"] if log_format == "json" else []
    flags = ["--without-mingle", "--without-gossip", "--loglevel", pool.log_level.upper()]
    return ["celery", "-A", APP_MODULE, *quiet, "worker", *(part for pair in options for part in pair), *flags]


def launch_argv(pool: str, host: str = HOST, python: str = "python") -> list[str]:
    """How an engine starts a worker of `pool`: the worker entry point, which execs worker_argv."""
    return [python, *WORKER_COMMAND, pool, *([] if host == HOST else ["--host", host])]
