"""The status and health report: per pool its workers, slots and the broker's view of its queues; per
queue its consumers and depth; the health verdict; tasks/s between two refreshes; and its renderings (the
status table, the health table, the live view's rich table, JSON).

    report = with_verdict(StatusReport(engine, tuple(pool_status(settings, workers, stats, activity)), ...))
    print("\\n".join(render_status(report)))     # render_health(report); status_table(report) on a terminal
    report.exit_code                             # 0 healthy, 3 broker unreachable, 4 no consumer / no ping
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from dts.config import Settings
from dts.errors import ExitCode
from dts.reports.console import fit, rich_table, table_lines


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    alive: bool  # answered ping
    concurrency: int = 0
    running: int = 0
    reserved: int = 0
    processed: int = 0  # tasks this worker has received since it started (inspect stats()["total"])


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    pool: str
    consumers: int | None  # None: the broker was not asked (unreachable)
    ready: int | None  # messages waiting to be delivered


@dataclass(frozen=True)
class PoolStatus:
    pool: str
    queues: tuple[str, ...]
    workers: tuple[WorkerStatus, ...]  # the replicas the engine runs ("wanted"); alive: those answering ping
    alive: int
    slots: int
    consumers: int | None  # the fewest consumers on any of the pool's queues (None: broker not asked)
    ready: int | None  # messages ready on the pool's queues
    unacked: int | None  # running + reserved on its live workers (None: broker not asked)
    other_consumers: int  # consumers this engine did not start
    processed: int = 0  # sum of the live workers' processed counters
    tasks_per_s: float | None = None  # from two refreshes (None: first frame, or not watched)


@dataclass(frozen=True)
class NodeStatus:
    """One node of a broker cluster: a RabbitMQ node name as the cluster sees it (`rabbit@rabbit-1`:
    running or not, its alarms, the nodes it is partitioned from), else a failover URL's host:port as a
    client sees it (answers or not)."""

    node: str
    state: str  # running | NOT RUNNING | answers | NO ANSWER
    alarms: tuple[str, ...] = ()
    partitioned_from: tuple[str, ...] = ()

    @property
    def down(self) -> bool:
        return self.state in ("NOT RUNNING", "NO ANSWER")


@dataclass(frozen=True)
class StatusReport:
    engine: str
    pools: tuple[PoolStatus, ...]
    broker: str = ""  # the broker URL, password redacted
    broker_ok: bool = True
    broker_error: str = ""  # why the broker did not answer (one line, with the fix)
    queues: tuple[QueueStatus, ...] = ()
    nodes: tuple[NodeStatus, ...] = ()  # a cluster's nodes (none: the broker is one node)
    problems: tuple[str, ...] = ()  # what makes it unhealthy (health_problems), empty when healthy
    exit_code: int = ExitCode.OK
    time: str = ""  # UTC, ISO 8601

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pool_status(
    settings: Settings, workers: dict[str, list[str]], stats: dict[str, Any], activity: dict[str, WorkerStatus]
) -> list[PoolStatus]:
    """Per pool: its workers, slots, and the broker's view of its queues (stats empty: not asked)."""
    rows = []
    for pool in settings.pools.values():
        members = tuple(activity.get(name, WorkerStatus(name, False)) for name in workers.get(pool.name, []))
        alive = [m for m in members if m.alive]
        queue_stats = [stats[q] for q in pool.queues if q in stats]
        consumers = min((q.consumers for q in queue_stats), default=None)
        rows.append(
            PoolStatus(
                pool=pool.name,
                queues=pool.queues,
                workers=members,
                alive=len(alive),
                slots=sum(m.concurrency for m in alive),
                consumers=consumers,
                ready=sum(q.ready for q in queue_stats) if queue_stats else None,
                unacked=sum(m.running + m.reserved for m in alive) if stats else None,
                other_consumers=max(0, (consumers or 0) - len(alive)),
                processed=sum(m.processed for m in alive),
            )
        )
    return rows


def queue_status(settings: Settings, stats: dict[str, Any]) -> list[QueueStatus]:
    """Per declared queue: its pool, consumers and messages ready (None when the broker was not asked)."""
    rows = []
    for q in settings.queues:
        consumers, ready = (stats[q].consumers, stats[q].ready) if q in stats else (None, None)
        rows.append(QueueStatus(q, settings.pool_for_queue(q).name, consumers, ready))
    return rows


def health_problems(report: StatusReport) -> tuple[list[str], int]:
    """What is wrong, one line each, and the exit code: 3 broker unreachable; 4 a queue without consumers
    or a worker of the engine not answering ping; 0 healthy."""
    if not report.broker_ok:
        return [report.broker_error or f"broker {report.broker} unreachable"], ExitCode.BROKER_UNREACHABLE
    problems = [f"{q.queue} (pool {q.pool}) has no consumer" for q in report.queues if q.consumers == 0]
    silent = [(w, p) for p in report.pools for w in p.workers if not w.alive]
    problems += [f"{w.name} (pool {p.pool}) does not answer ping" for w, p in silent]
    return problems, ExitCode.NO_CONSUMER if problems else ExitCode.OK


def with_verdict(report: StatusReport) -> StatusReport:
    problems, code = health_problems(report)
    return replace(report, problems=tuple(problems), exit_code=code)


def worker_rates(previous: StatusReport | None, current: StatusReport, elapsed: float) -> StatusReport:
    """tasks/s per pool between two refreshes: the growth of each live worker's processed counter over
    `elapsed` seconds. A worker new since the last frame, or whose counter went back (restarted), adds 0.
    No previous frame (or elapsed <= 0): tasks/s stays None."""
    if previous is None or elapsed <= 0:
        return current
    before = {w.name: w.processed for p in previous.pools for w in p.workers if w.alive}
    pools = []
    for p in current.pools:
        grown = sum(max(0, w.processed - before[w.name]) for w in p.workers if w.alive and w.name in before)
        pools.append(replace(p, tasks_per_s=grown / elapsed))
    return replace(current, pools=tuple(pools))


def _unknown(value: int | float | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


STATUS_HEADERS = ("pool", "queues", "wanted", "running", "slots", "consumers", "ready", "unacked", "tasks/s")


def status_rows(report: StatusReport) -> list[tuple[str, ...]]:
    """The status table's rows (one per pool, columns STATUS_HEADERS), for the text and the live view."""
    asked = report.broker_ok  # else: not asked (broker unreachable)
    return [
        (
            r.pool,
            ",".join(r.queues),
            str(len(r.workers)),
            str(r.alive) if asked else "-",
            str(r.slots) if asked else "-",
            _unknown(r.consumers),
            _unknown(r.ready),
            _unknown(r.unacked),
            _unknown(r.tasks_per_s, "{:.1f}"),
        )
        for r in report.pools
    ]


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Fixed-width text: the first two columns left-aligned, the numbers right-aligned."""
    return table_lines(headers, rows, right=range(2, len(headers)))


def shown_broker(report: StatusReport) -> str:
    """The broker URL for a header line: a cluster's first node and how many more (the JSON has them all)."""
    first, *more = (report.broker or "?").split(";")
    return f"{first} (+{len(more)} failover node{'s' if len(more) > 1 else ''})" if more else first


def node_lines(report: StatusReport) -> list[str]:
    """One line for a cluster's nodes: each one's state, alarms and partitions (nothing for one node)."""
    if not report.nodes:
        return []
    parts = []
    for n in report.nodes:
        extra = [*(f"alarm {a}" for a in n.alarms), *(f"partitioned from {p}" for p in n.partitioned_from)]
        parts.append(f"{n.node} {n.state}" + (f" ({'; '.join(extra)})" if extra else ""))
    return ["nodes: " + ", ".join(parts)]


def render_status(report: StatusReport) -> list[str]:
    broker = f"{shown_broker(report)} ({'ok' if report.broker_ok else 'UNREACHABLE'})"
    lines = [f"engine: {report.engine}   broker: {broker}", *node_lines(report)]
    lines += _table(STATUS_HEADERS, status_rows(report))
    for r in report.pools:
        for m in r.workers:
            if not report.broker_ok:
                state = "not asked: broker unreachable"
            elif m.alive:
                state = (
                    f"concurrency {m.concurrency}, running {m.running}, reserved {m.reserved}, processed {m.processed}"
                )
            else:
                state = "not answering ping"
            lines.append(f"  {m.name}  ({state})")
        if r.other_consumers:
            lines.append(f"  + {r.other_consumers} consumer(s) of {','.join(r.queues)} not started by this engine")
    return fitted(lines)


def fitted(lines: list[str]) -> list[str]:
    """The report's lines, a longer one going on under its own text (a long broker URL, a problem)."""
    return [part for line in lines for part in fit(line, hang=2 if line.startswith("UNHEALTHY") else None)]


HEALTH_QUEUE_HEADERS = ("queue", "pool", "consumers", "ready")
HEALTH_WORKER_HEADERS = ("worker", "pool", "ping")


def render_health(report: StatusReport) -> list[str]:
    """The health table: broker, each queue's consumers and depth, each worker's ping, the verdict."""
    lines = [f"broker  {shown_broker(report)}  {'ok' if report.broker_ok else 'UNREACHABLE'}", *node_lines(report), ""]
    queues = [(q.queue, q.pool, _unknown(q.consumers), _unknown(q.ready)) for q in report.queues]
    lines += _table(HEALTH_QUEUE_HEADERS, queues)
    ping = {True: "ok", False: "NO REPLY"} if report.broker_ok else {True: "-", False: "-"}  # not asked
    workers = [(w.name, p.pool, ping[w.alive]) for p in report.pools for w in p.workers]
    lines += ["", *_table(HEALTH_WORKER_HEADERS, workers)] if workers else ["", f"no workers ({report.engine})"]
    lines.append("")
    lines += [f"UNHEALTHY (exit {report.exit_code}): {p}" for p in report.problems] or ["healthy"]
    return fitted(lines)


def status_table(report: StatusReport):
    """The live view's rich table (status --watch on a terminal): the same rows as the text (status_rows),
    narrow enough for 80 columns."""
    from rich import box

    broker = f"{report.broker} {'ok' if report.broker_ok else 'UNREACHABLE'}"
    return rich_table(
        STATUS_HEADERS,
        status_rows(report),
        right=range(2, len(STATUS_HEADERS)),
        no_wrap=(0, 1),
        title=f"{report.time}  engine {report.engine}\nbroker {broker}",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
        caption="\n".join(report.problems) or "healthy   (Ctrl-C to stop)",
    )
