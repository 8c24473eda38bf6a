"""Real workers for tests and benchmarks: the one helper that starts, yields and stops them (like celery's
`celery.contrib.testing.worker.start_worker`, but real `celery worker` processes of the local engine).

    with local_workers(settings, app, run_dir) as engine:   # every pool at its replicas, answering ping
        ...                                                  # engine.workers(), engine.resize({...})
    # stopped (warm shutdown), also when the body raised
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from dts.config import Settings
from dts.engines.local import LocalEngine


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Clean-up that a second Ctrl-C must not cut short (SIGINT ignored meanwhile, in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def local_workers(settings: Settings, app, run_dir: Path) -> Iterator[LocalEngine]:
    """Every pool of `settings` at its declared replicas as local `celery worker` processes (supervised
    from `run_dir`), yielded as their engine once each answers ping; stopped afterwards. A start that
    fails part way stops what did start, then raises (CliError)."""
    engine = LocalEngine(settings, app, run_dir=run_dir)
    try:
        engine.start()
        yield engine
    finally:
        with uninterrupted():
            engine.stop()
