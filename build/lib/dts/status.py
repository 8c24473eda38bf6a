"""What is running: per pool, its workers (asked from the engines and the workers themselves) and its
queues (asked from the broker). One code path for `scale.py status`, `status --watch`, `health` and their
`--json`: `collect_status` builds the report, dts.reports.status_report renders it.

    report = collect_status(settings, engines, app)     # report.exit_code: 0 healthy, 3, 4
    watch(settings, engines, app, interval=1.0)          # refresh the table until Ctrl-C
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from dts.amqp.checks import (
    LOST,
    address,
    check_broker,
    forget_connections,
    lost_majority,
    node_answers,
    queue_stats,
    redact_url,
)
from dts.amqp.checks import broker_error as lost_broker
from dts.config import Settings
from dts.config.schema import URL_SEPARATOR
from dts.amqp.control import ask_workers
from dts.amqp.deadline import Deadline, session
from dts.engines.base import Engine
from dts.errors import CliError
from dts.reports.console import interactive
from dts.reports.status_report import (
    NodeStatus,
    StatusReport,
    WorkerStatus,
    pool_status,
    queue_status,
    render_status,
    status_table,
    with_verdict,
    worker_rates,
)

log = logging.getLogger("dts.status")
PING_TIMEOUT = 1.0  # how long a worker may take to answer; answering workers cost one round trip, not this


def worker_activity(
    app, names: list[str], deadline: Deadline, timeout: float = PING_TIMEOUT
) -> dict[str, WorkerStatus]:
    """Ask the workers: who answers ping, its execution pool's concurrency, tasks running and reserved,
    tasks processed. Every question names its destinations, so it returns as soon as they all replied:
    a refresh costs four round trips, and only a worker that does not answer ping costs `timeout` (once:
    the other three ask only the live ones). All of it by `deadline` (else BrokerSilent)."""
    if not names:
        return {}
    active, reserved, stats = {}, {}, {}
    with session(app, deadline) as conn:
        pongs = ask_workers(app, conn, "ping", deadline, destination=names, wait=timeout)
        live = [name for name in names if name in pongs]
        if live:
            stats, active, reserved = (
                ask_workers(app, conn, command, deadline, destination=live, wait=timeout)
                for command in ("stats", "active", "reserved")
            )
    return {
        name: WorkerStatus(
            name=name,
            alive=name in pongs,
            concurrency=int(stats.get(name, {}).get("pool", {}).get("max-concurrency", 0)),
            running=len(active.get(name, [])),
            reserved=len(reserved.get(name, [])),
            processed=sum(stats.get(name, {}).get("total", {}).values()),
        )
        for name in names
    }


def cluster_nodes(app, engines: list[Engine], timeout: float) -> list[NodeStatus]:
    """A cluster's nodes: as the cluster sees them when an engine runs them, else as each failover URL
    answers; none for a broker of one node."""
    if URL_SEPARATOR not in app.conf.broker_url:
        return []
    for engine in engines:
        if nodes := engine.broker_nodes():
            return nodes
    return [NodeStatus(address(url), "answers" if ok else "NO ANSWER") for url, ok in node_answers(app, timeout)]


def collect_status(settings: Settings, engines: list[Engine], app) -> StatusReport:
    """The status report with its health verdict (report.exit_code, report.problems)."""
    workers: dict[str, list[str]] = {pool: [] for pool in settings.pools}
    names = []
    for index, engine in enumerate(engines):
        found = engine.workers()
        if index == 0 or any(found.values()):  # the chosen engine, and any other that has workers
            names.append(engine.name)
            workers = {pool: workers[pool] + found.get(pool, []) for pool in workers}
    try:
        check_broker(app, settings.broker.connect_timeout)
        deadline = Deadline.after(settings.broker.connect_timeout)
        stats = queue_stats(app, settings.queues, deadline)
        activity = worker_activity(app, [n for nodes in workers.values() for n in nodes], deadline)
    except CliError as exc:
        log.debug("broker: %s", exc)
        stats, activity, broker_error = {}, {}, str(exc)
    except LOST as exc:  # lost between the check and the questions (a restart, a pause): a row, not a traceback
        forget_connections(app)  # the next refresh connects afresh
        stats, activity, broker_error = {}, {}, str(lost_broker(app.conf.broker_url, exc))
    else:
        broker_error = ""
    nodes = cluster_nodes(app, engines, settings.broker.connect_timeout)
    if nodes and 2 * sum(not n.down for n in nodes) <= len(nodes):  # the cause, rather than its symptoms
        broker_error = lost_majority(app, settings.broker.connect_timeout) or broker_error
    report = StatusReport(
        engine="+".join(names),
        pools=tuple(pool_status(settings, workers, stats, activity)),
        broker=redact_url(app.conf.broker_url),
        broker_ok=not broker_error,
        broker_error=broker_error,
        queues=tuple(queue_status(settings, stats)),
        nodes=tuple(nodes),
        time=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return with_verdict(report)


def watch(
    settings: Settings,
    engines: list[Engine],
    app,
    interval: float = 1.0,
    count: int | None = None,
    as_json: bool = False,
) -> int:
    """Refresh the status every `interval` seconds (tasks/s from the previous refresh) until Ctrl-C or
    `count` frames; exit code of the last frame. Ctrl-C ends it quietly with 0. `as_json`: one JSON
    document per line and refresh. A rich live table on a terminal; plain text per refresh when piped or
    under CI=true."""
    live = None
    if interactive(sys.stdout) and not as_json:
        from rich.live import Live

        live = Live(auto_refresh=False)
    previous, before, frames, code = None, 0.0, 0, 0
    try:
        if live:
            live.start()
        while count is None or frames < count:
            started = time.monotonic()
            report = worker_rates(previous, collect_status(settings, engines, app), started - before)
            previous, before, frames, code = report, started, frames + 1, report.exit_code
            if as_json:
                print(json.dumps(report.to_json()), flush=True)
            elif live:
                live.update(status_table(report), refresh=True)
            else:
                print(f"--- {report.time}", *render_status(report), *report.problems, sep="\n", flush=True)
            if count is None or frames < count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        code = 0
    finally:
        if live:
            live.stop()
    return code
