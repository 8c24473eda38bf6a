"""What is running: per pool, its workers (asked from the engines and the workers themselves) and its
queues (asked from the broker). One code path for `scale.py status` and its `--json`."""

from __future__ import annotations

import logging

from dts.broker import check_broker, queue_stats
from dts.config import Settings
from dts.engine import Engine
from dts.errors import CliError
from dts.reports import StatusReport, WorkerStatus, pool_status

log = logging.getLogger("dts.status")


def worker_activity(app, names: list[str]) -> dict[str, WorkerStatus]:
    """Ask the workers: who answers, its execution pool's concurrency, tasks running and reserved."""
    if not names:
        return {}
    inspect = app.control.inspect(destination=names, timeout=2.0)
    pongs = inspect.ping() or {}
    active, reserved, stats = inspect.active() or {}, inspect.reserved() or {}, inspect.stats() or {}
    return {
        name: WorkerStatus(
            name=name,
            alive=name in pongs,
            concurrency=int(stats.get(name, {}).get("pool", {}).get("max-concurrency", 0)),
            running=len(active.get(name, [])),
            reserved=len(reserved.get(name, [])),
        )
        for name in names
    }


def collect_status(settings: Settings, engines: list[Engine], app) -> tuple[StatusReport, bool]:
    """The status report, and whether the broker answered (False: consumers and depth unknown)."""
    workers: dict[str, list[str]] = {pool: [] for pool in settings.pools}
    names = []
    for index, engine in enumerate(engines):
        found = engine.workers()
        if index == 0 or any(found.values()):  # the chosen engine, and any other that has workers
            names.append(engine.name)
            workers = {pool: workers[pool] + found.get(pool, []) for pool in workers}
    try:
        check_broker(app, settings.broker.connect_timeout)
        stats = queue_stats(app, settings.queues)
        activity = worker_activity(app, [n for nodes in workers.values() for n in nodes])
    except CliError as exc:
        log.warning("%s", exc)
        stats, activity = {}, {}
    report = StatusReport("+".join(names), tuple(pool_status(settings, workers, stats, activity)))
    return report, bool(stats)
