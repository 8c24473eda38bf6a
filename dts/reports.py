"""Reports of dispatch, load test and status: frozen dataclasses built by pure functions, rendered to text
lines and to JSON (`to_json`) here and nowhere else.

    report = dispatch_report(settings, outcomes, total, rounds)
    print("\\n".join(render_dispatch(report)))       # or json.dumps(report.to_json())
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any

from dts.config import Settings
from dts.errors import ExitCode
from dts.naming import pool_of_node

SCHEMA_VERSION = 3  # 3: a task's `state` (succeeded | failed | unknown); load: broker_lost, pools_lost


def label(task: str) -> str:
    """'task_a' -> 'Task A'"""
    return "Task " + task.rsplit("_", 1)[-1].upper()


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class TaskOutcome:
    task: str
    task_id: str
    pool: str  # the pool that owns the task's queue
    result: dict[str, Any] | None = None  # the task's return value on success
    error: str | None = None  # why it failed or went missing
    isolation_breach: str | None = None
    unknown: bool = False  # no result by the deadline: it may still be queued, running, or have run

    @property
    def state(self) -> str:
        """succeeded | failed | unknown"""
        return "succeeded" if self.ok else "unknown" if self.unknown else "failed"

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None and self.isolation_breach is None

    @property
    def retries(self) -> int:
        """From the result, or for a task that gave up, from its error."""
        if self.result:
            return self.result["retries"]
        match = re.search(r"gave up after (\d+) attempts", self.error or "")
        return int(match.group(1)) - 1 if match else 0


def failure_reason(task: str, exc_type: str, args: Any, text: str) -> str:
    """A failed task's error line, 'Type: text'. Celery's TimeLimitExceeded (the hard time limit: the worker
    killed the process running the task) only carries the limit, so its line is spelt out here."""
    if exc_type == "TimeLimitExceeded":
        limit = args[0] if isinstance(args, list | tuple) and args else args
        limit = f" of {limit:g}s" if isinstance(limit, int | float) else ""
        return f"TimeLimitExceeded: {task} exceeded hard time limit{limit}; the worker killed its process; not retried"
    return f"{exc_type}: {text}"


def success(task: str, task_id: str, pool: str, result: dict[str, Any]) -> TaskOutcome:
    """A result, checked for isolation: it must name a worker of the pool that owns the task's queue."""
    ran_on = pool_of_node(result.get("worker") or "")
    breach = (
        None if ran_on == pool else f"{task} ran on {result.get('worker')} (pool {ran_on}), expected a {pool} worker"
    )
    return TaskOutcome(task, task_id, pool, result=result, isolation_breach=breach)


@dataclass(frozen=True)
class DispatchSummary:
    total_time: float
    sum_execution_time: float
    longest_execution_time: float
    overhead: float  # total - longest task
    speedup: float | None
    total_retries: int
    max_backoff: float
    failed: tuple[str, ...]


@dataclass(frozen=True)
class RepeatSummary:
    rounds: int
    failed_rounds: int
    total_median: float | None
    overhead_median: float | None
    overhead_min: float | None
    overhead_max: float | None


@dataclass(frozen=True)
class DispatchReport:
    config_name: str
    config_path: str
    outcomes: tuple[TaskOutcome, ...]
    summary: DispatchSummary
    repeat: RepeatSummary | None
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        tasks = [{**asdict(o), "ok": o.ok, "state": o.state} for o in self.outcomes]
        return {
            "schema": SCHEMA_VERSION,
            "config": {"name": self.config_name, "path": self.config_path},
            "tasks": tasks,
            "summary": asdict(self.summary),
            "repeat": asdict(self.repeat) if self.repeat else None,
            "exit_code": self.exit_code,
        }


def summarise_dispatch(outcomes: list[TaskOutcome], total: float) -> DispatchSummary:
    times = [o.result["execution_time"] for o in outcomes if o.result]
    longest = max(times, default=0.0)
    return DispatchSummary(
        total_time=round(total, 6),
        sum_execution_time=round(sum(times), 6),
        longest_execution_time=round(longest, 6),
        overhead=round(total - longest, 6),
        speedup=round(sum(times) / total, 3) if total > 0 else None,
        total_retries=sum(o.retries for o in outcomes),
        max_backoff=round(max((sum(o.result["retry_delays"]) for o in outcomes if o.result), default=0.0), 6),
        failed=tuple(o.task for o in outcomes if not o.ok),
    )


def summarise_rounds(summaries: list[DispatchSummary]) -> RepeatSummary:
    good = [s for s in summaries if not s.failed]
    overheads = [s.overhead for s in good]
    return RepeatSummary(
        rounds=len(summaries),
        failed_rounds=len(summaries) - len(good),
        total_median=statistics.median([s.total_time for s in good]) if good else None,
        overhead_median=statistics.median(overheads) if good else None,
        overhead_min=min(overheads, default=None),
        overhead_max=max(overheads, default=None),
    )


def dispatch_report(settings: Settings, rounds: list[tuple[list[TaskOutcome], DispatchSummary]]) -> DispatchReport:
    """The report of the last round (and, for several rounds, their overhead statistics)."""
    outcomes, summary = rounds[-1]
    failed = any(s.failed for _, s in rounds)
    return DispatchReport(
        config_name=settings.name,
        config_path=str(settings.path),
        outcomes=tuple(outcomes),
        summary=summary,
        repeat=summarise_rounds([s for _, s in rounds]) if len(rounds) > 1 else None,
        exit_code=ExitCode.FAILED if failed else ExitCode.OK,
    )


DISPATCH_COLUMNS = ("Task", "Result", "Worker", "Queue", "Time", "Retries")


def dispatch_rows(report: DispatchReport) -> list[tuple[str, ...]]:
    """The summary table: one row per task (DISPATCH_COLUMNS)."""
    rows = []
    for o in report.outcomes:
        r = o.result or {}
        delays = ", ".join(f"{d:.2f}s" for d in r.get("retry_delays", []))
        retries = f"{o.retries}" + (f" (backoff {delays})" if delays else "")
        result = (
            r.get("message", "") if o.ok else f"{'UNKNOWN' if o.unknown else 'FAILED'}: {o.error or o.isolation_breach}"
        )
        time_ = f"{r['execution_time']:.3f}s" if r else "-"
        rows.append((o.task, result, r.get("worker") or "-", r.get("queue") or "-", time_, retries))
    return rows


def table_lines(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A plain text table, columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(columns, *rows, strict=True)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (columns, *rows)]


def dispatch_totals(report: DispatchReport) -> list[str]:
    """The lines under the table: wall time, counts, fastest/slowest, speed-up, retries, isolation."""
    s, outcomes = report.summary, report.outcomes
    ok = [o for o in outcomes if o.ok]
    unknown = [o for o in outcomes if o.unknown]
    lines = [f"Total dispatcher time: {s.total_time:.3f}s (concurrent execution)",
             f"Tasks: {len(ok)} succeeded, {len(outcomes) - len(ok) - len(unknown)} failed"
             + (f", {len(unknown)} unknown ({', '.join(o.task_id for o in unknown)})" if unknown else "")]  # fmt: skip
    if ok:
        fastest = min(ok, key=lambda o: o.result["execution_time"])
        slowest = max(ok, key=lambda o: o.result["execution_time"])
        lines[-1] += (f"; fastest {fastest.task} {fastest.result['execution_time']:.3f}s, "
                      f"slowest {slowest.task} {slowest.result['execution_time']:.3f}s")  # fmt: skip
    if not s.failed and s.total_retries:
        lines.append(f"Time includes backoff waits of up to {s.max_backoff:.3f}s per task; "
                     "speed-up is reported for runs without retries")  # fmt: skip
    elif not s.failed:
        lines.append(f"Sum of task execution times: {s.sum_execution_time:.3f}s "
                     "(what running them one after the other would take at least)")  # fmt: skip
        lines.append(f"Speed-up from concurrency: {s.speedup:.2f}x; "
                     f"overhead beyond the longest task: {s.overhead * 1000:.1f} ms")  # fmt: skip
    lines.append(f"Total retries: {s.total_retries}")
    lines += [f"{o.task} ISOLATION BREACH: {o.isolation_breach}" for o in outcomes if o.isolation_breach]
    if s.failed:
        lines.append(f"FAILED: {', '.join(s.failed)}")
    else:
        lines.append("Isolation: OK (" + ", ".join(f"{o.task} on {o.pool}" for o in outcomes) + ")")
    r = report.repeat
    if r and r.overhead_median is not None:
        lines.append(f"Over {r.rounds} rounds: total time median {r.total_median * 1000:.1f} ms; overhead median "
                     f"{r.overhead_median * 1000:.1f} ms (min {r.overhead_min * 1000:.1f}, max {r.overhead_max * 1000:.1f})")  # fmt: skip
    return lines


def render_dispatch(report: DispatchReport) -> list[str]:
    """The summary as plain text: the table, then the totals."""
    return table_lines(DISPATCH_COLUMNS, dispatch_rows(report)) + dispatch_totals(report)


def bare_results(report: DispatchReport) -> list[str]:
    """--quiet: one line per task, its result or why it failed."""
    return [f"{o.task}: {o.result['message']}" if o.ok else f"{o.task}: {o.state.upper()}: {o.error or o.isolation_breach}"
            for o in report.outcomes]  # fmt: skip


# --------------------------------------------------------------------------- load test


@dataclass(frozen=True)
class Sample:
    """One task of a load: when it was sent and, once it completed, what came back."""

    task: str
    task_id: str
    sent_at: float  # wall clock (time.time()) on the client
    received_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    unknown: bool = False  # no result by the deadline: it may still be queued, running, or have run

    @property
    def state(self) -> str:
        """succeeded | failed | unknown"""
        return "succeeded" if self.result is not None else "unknown" if self.unknown else "failed"

    def to_json(self) -> dict[str, Any]:
        r = self.result or {}
        return {"task": self.task, "task_id": self.task_id, "sent_at": self.sent_at, "received_at": self.received_at,
                "ok": self.result is not None, "state": self.state, "worker": r.get("worker"),
                "started_at": r.get("started_at"), "execution_time": r.get("execution_time"),
                "retries": r.get("retries"), "error": self.error}  # fmt: skip


@dataclass(frozen=True)
class Distribution:
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None


@dataclass(frozen=True)
class PoolLoad:
    tasks: int
    completed: int
    pool: str
    slots: int
    work: float
    ideal: float


@dataclass(frozen=True)
class LoadReport:
    tasks: int
    completed: int
    failed: int  # failed or unknown: every task that did not succeed
    failures: tuple[dict[str, Any], ...]  # {task, task_id, state: failed | unknown, error}
    retries: int
    total_time: float
    throughput: float | None
    latency: Distribution
    queue_wait: Distribution
    execution: Distribution
    per_worker: dict[str, int]
    slots: dict[str, int]
    pools: dict[str, PoolLoad]  # per task type
    ideal_time: float
    work_per_slot: float
    efficiency: float | None
    efficiency_work_per_slot: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values, q: float, ordered: bool = False) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values (exact); None for no values."""
    if not values:
        return None
    ordered = values if ordered else sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def distribution(values) -> Distribution:
    """p50/p95/p99/max/mean of a list or array('d'), sorted once (an array stays an array: 8 bytes a value)."""
    if not len(values):
        return Distribution(None, None, None, None, None)
    ordered = type(values)("d", sorted(values)) if not isinstance(values, list) else sorted(values)
    return Distribution(percentile(ordered, 50, True), percentile(ordered, 95, True), percentile(ordered, 99, True),
                        ordered[-1], statistics.fmean(ordered))  # fmt: skip


def ideal_time(executions: list[float], slots: int) -> float:
    """Lower bound on the time one pool needs for these tasks on `slots` slots: the work spread evenly,
    but no less than ceil(tasks / slots) of the shortest task in a row, nor the longest task."""
    if not executions:
        return 0.0
    if slots < 1:
        return math.inf
    return max(sum(executions) / slots, math.ceil(len(executions) / slots) * min(executions), max(executions))


def _pool_load(settings: Settings, task: str, table, slots: dict[str, int]) -> PoolLoad:
    pool = settings.pool_for_task(task).name
    times = list(table.executions(task))
    return PoolLoad(tasks=table.tasks_of(task), completed=len(times), pool=pool,
                    slots=slots.get(pool, 0), work=sum(times), ideal=ideal_time(times, slots.get(pool, 0)))  # fmt: skip


def summarise_load(settings: Settings, samples, slots: dict[str, int], wall: float) -> LoadReport:
    """The report of one load run (pure: samples in, numbers out). `samples`: a dts.samples.SampleTable,
    or Sample objects."""
    from dts.samples import SUCCEEDED, SampleTable

    table = samples if isinstance(samples, SampleTable) else SampleTable.of(samples)
    completed = table.count(SUCCEEDED)
    pools = {task: _pool_load(settings, task, table, slots) for task in settings.tasks}
    ideal = max((p.ideal for p in pools.values()), default=0.0)
    work_per_slot = max((p.work / p.slots for p in pools.values() if p.slots), default=0.0)
    failures = tuple(
        {"task": s.task, "task_id": s.task_id, "state": s.state, "error": s.error}
        for s in (table.sample(row) for row in range(len(table)) if table.state[row] != SUCCEEDED)
    )
    return LoadReport(
        tasks=len(table),
        completed=completed,
        failed=len(table) - completed,
        failures=failures,
        retries=table.total_retries(),
        total_time=wall,
        throughput=completed / wall if wall > 0 else None,
        latency=distribution(table.latencies()),
        queue_wait=distribution(table.queue_waits()),
        execution=distribution(table.executions()),
        per_worker=dict(sorted(table.per_worker().items())),
        slots=slots,
        pools=pools,
        ideal_time=ideal,
        work_per_slot=work_per_slot,
        efficiency=ideal / wall if wall > 0 and completed else None,
        efficiency_work_per_slot=work_per_slot / wall if wall > 0 and completed else None,
    )


def threshold_failures(report: LoadReport, settings: Settings) -> list[str]:
    limits, problems = settings.load_test, []
    unknown = [f["task_id"] for f in report.failures if f["state"] == "unknown"]
    if report.failed - len(unknown):
        problems.append(f"{report.failed - len(unknown)} task(s) failed")
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f", … ({len(unknown) - 5} more in the result file)" if len(unknown) > 5 else ""
        )
        problems.append(f"{len(unknown)} task(s) unknown, no result by the deadline: {shown}")
    eff = report.efficiency
    if limits.min_efficiency and (eff is None or eff < limits.min_efficiency):
        problems.append(f"efficiency {eff or 0:.3f} below load_test.min_efficiency {limits.min_efficiency:g}")
    p95 = report.latency.p95
    if limits.max_p95 and (p95 is None or p95 > limits.max_p95):
        problems.append(f"p95 latency {p95 or 0:.3f}s above load_test.max_p95 {limits.max_p95:g}s")
    return problems


def _unknown_tasks(report: LoadReport) -> int:
    return sum(1 for f in report.failures if f["state"] == "unknown")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_load(r: LoadReport) -> list[str]:
    lines = [
        f"Tasks: {r.tasks} sent, {r.completed} completed, {r.failed - _unknown_tasks(r)} failed, {_unknown_tasks(r)} unknown, "
        f"{r.retries} retries",
        f"Total time: {r.total_time:.3f}s   throughput: {r.throughput or 0:.1f} tasks/s",
        f"{'ms':<22}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}",
    ]
    for name, d in (("latency (end to end)", r.latency), ("  queue wait", r.queue_wait), ("  execution", r.execution)):
        lines.append(f"{name:<22}{_ms(d.p50):>7}{_ms(d.p95):>7}{_ms(d.p99):>7}{_ms(d.max):>7}")
    lines.append("Tasks per worker: " + ", ".join(f"{w} {n}" for w, n in r.per_worker.items()))
    slots = ", ".join(f"{pool} {n}" for pool, n in r.slots.items())
    lines.append(f"Worker slots (replicas x concurrency): {slots}; ideal time {r.ideal_time:.3f}s "
                 f"(work per slot {r.work_per_slot:.3f}s)")  # fmt: skip
    lines.append(f"Efficiency (ideal / actual): {_ratio(r.efficiency)} "
                 f"(work per slot / actual: {_ratio(r.efficiency_work_per_slot)})")  # fmt: skip
    lines += [f"FAILED {f['task']} {f['task_id']}: {f['error']}" for f in r.failures[:10]]
    return lines


def render_sweep(runs: list[tuple[int, LoadReport]]) -> list[str]:
    lines = [f"{'size':>4} {'slots':>5} {'time s':>7} {'tasks/s':>8} {'ideal s':>8} {'speed-up':>8} {'efficiency':>10}"]
    base = runs[0][1].total_time if runs else None
    for size, r in runs:
        speedup = base / r.total_time if base and r.total_time else 0
        lines.append(f"{size:>4} {sum(r.slots.values()):>5} {r.total_time:>7.3f} {r.throughput or 0:>8.1f} "
                     f"{r.ideal_time:>8.3f} {speedup:>7.2f}x {r.efficiency or 0:>10.3f}")  # fmt: skip
    return lines


# --------------------------------------------------------------------------- status and health


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
class StatusReport:
    engine: str
    pools: tuple[PoolStatus, ...]
    broker: str = ""  # the broker URL, password redacted
    broker_ok: bool = True
    broker_error: str = ""  # why the broker did not answer (one line, with the fix)
    queues: tuple[QueueStatus, ...] = ()
    problems: tuple[str, ...] = ()  # what makes it unhealthy (health_problems), empty when healthy
    exit_code: int = ExitCode.OK
    time: str = ""  # UTC, ISO 8601

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pool_status(settings: Settings, workers: dict[str, list[str]], stats: dict[str, Any],
                activity: dict[str, WorkerStatus]) -> list[PoolStatus]:  # fmt: skip
    """Per pool: its workers, slots, and the broker's view of its queues (stats empty: not asked)."""
    rows = []
    for pool in settings.pools.values():
        members = tuple(activity.get(name, WorkerStatus(name, False)) for name in workers.get(pool.name, []))
        alive = [m for m in members if m.alive]
        queue_stats = [stats[q] for q in pool.queues if q in stats]
        consumers = min((q.consumers for q in queue_stats), default=None)
        rows.append(PoolStatus(
            pool=pool.name, queues=pool.queues, workers=members, alive=len(alive),
            slots=sum(m.concurrency for m in alive),
            consumers=consumers, ready=sum(q.ready for q in queue_stats) if queue_stats else None,
            unacked=sum(m.running + m.reserved for m in alive) if stats else None,
            other_consumers=max(0, (consumers or 0) - len(alive)),
            processed=sum(m.processed for m in alive),
        ))  # fmt: skip
    return rows


def queue_status(settings: Settings, stats: dict[str, Any]) -> list[QueueStatus]:
    """Per declared queue: its pool, consumers and messages ready (None when the broker was not asked)."""
    return [QueueStatus(q, settings.pool_for_queue(q).name, stats[q].consumers if q in stats else None,
                        stats[q].ready if q in stats else None) for q in settings.queues]  # fmt: skip


def health_problems(report: StatusReport) -> tuple[list[str], int]:
    """What is wrong, one line each, and the exit code: 3 broker unreachable; 4 a queue without consumers
    or a worker of the engine not answering ping; 0 healthy."""
    if not report.broker_ok:
        return [report.broker_error or f"broker {report.broker} unreachable"], ExitCode.BROKER_UNREACHABLE
    problems = [f"{q.queue} (pool {q.pool}) has no consumer" for q in report.queues if q.consumers == 0]
    problems += [f"{w.name} (pool {p.pool}) does not answer ping" for p in report.pools for w in p.workers
                 if not w.alive]  # fmt: skip
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
    return [(r.pool, ",".join(r.queues), str(len(r.workers)), str(r.alive) if report.broker_ok else "-",
             str(r.slots) if report.broker_ok else "-", _unknown(r.consumers),
             _unknown(r.ready), _unknown(r.unacked), _unknown(r.tasks_per_s, "{:.1f}")) for r in report.pools]  # fmt: skip


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Fixed-width text: the first two columns left-aligned, the numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
            for cells in (headers, *rows)]  # fmt: skip


def render_status(report: StatusReport) -> list[str]:
    broker = f"{report.broker or '?'} ({'ok' if report.broker_ok else 'UNREACHABLE'})"
    lines = [f"engine: {report.engine}   broker: {broker}"]
    lines += _table(STATUS_HEADERS, status_rows(report))
    for r in report.pools:
        for m in r.workers:
            state = (f"concurrency {m.concurrency}, running {m.running}, reserved {m.reserved}, "
                     f"processed {m.processed}" if m.alive else "not answering ping")  # fmt: skip
            state = state if report.broker_ok else "not asked: broker unreachable"
            lines.append(f"  {m.name}  ({state})")
        if r.other_consumers:
            lines.append(f"  + {r.other_consumers} consumer(s) of {','.join(r.queues)} not started by this engine")
    return lines


HEALTH_QUEUE_HEADERS = ("queue", "pool", "consumers", "ready")
HEALTH_WORKER_HEADERS = ("worker", "pool", "ping")


def render_health(report: StatusReport) -> list[str]:
    """The health table: broker, each queue's consumers and depth, each worker's ping, the verdict."""
    lines = [f"broker  {report.broker or '?'}  {'ok' if report.broker_ok else 'UNREACHABLE'}", ""]
    lines += _table(HEALTH_QUEUE_HEADERS, [(q.queue, q.pool, _unknown(q.consumers), _unknown(q.ready))
                                           for q in report.queues])  # fmt: skip
    ping = {True: "ok", False: "NO REPLY"} if report.broker_ok else {True: "-", False: "-"}  # not asked
    workers = [(w.name, p.pool, ping[w.alive]) for p in report.pools for w in p.workers]
    lines += ["", *_table(HEALTH_WORKER_HEADERS, workers)] if workers else ["", f"no workers ({report.engine})"]
    lines.append("")
    lines += [f"UNHEALTHY (exit {report.exit_code}): {p}" for p in report.problems] or ["healthy"]
    return lines
