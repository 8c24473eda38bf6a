"""The load test's report: per run, the latency distributions (end to end, queue wait, execution) in all
and per task type, the tasks per worker, the failures by reason, per pool the ideal time on the worker
slots it had (dts.reports.slots) and its efficiency; the thresholds it missed; and the whole test (its runs,
at one size or a sweep of sizes) as text and as its result file's JSON.

    report = summarise_load(settings, table, slots, wall)       # table: the SampleTable of one run
    test = LoadTestReport(config, spec, (LoadRun(None, report, table),), tuple(threshold_failures(report, settings)))
    print("\\n".join(render_load_test(test)))                     # the result file: test.to_json()
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from dts.config import Settings
from dts.reports.console import fit
from dts.reports.documents import Stream
from dts.reports.slots import ideal_on, pool_lanes, work_bound
from dts.runs.samples import FAILED, SUCCEEDED, UNKNOWN, SampleTable


@dataclass(frozen=True)
class Distribution:
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None


@dataclass(frozen=True)
class TaskLoad:
    """One task type of a run: its pool, counts, work (seconds of execution), latencies, failures by reason."""

    pool: str
    tasks: int
    completed: int
    failed: int
    unknown: int
    work: float
    latency: Distribution
    queue_wait: Distribution
    execution: Distribution
    failures: dict[str, int]  # reason -> tasks


@dataclass(frozen=True)
class PoolLoad:
    """One pool of a run: its tasks (of every type routed to it), the slots it had (at the start, and at
    most: dts.reports.slots), its work, ideal time and efficiency (ideal / time to its last result)."""

    tasks: int
    completed: int
    slots: int
    slots_max: int
    work: float
    work_per_slot: float  # the work spread over its slots as they came (work / slots on a steady pool)
    ideal: float
    efficiency: float | None


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
    failure_reasons: dict[str, int]  # reason -> tasks that failed or are unknown for it
    task_types: dict[str, TaskLoad]
    slots: dict[str, int]  # per pool, asked from the workers before the run
    pools: dict[str, PoolLoad]  # per pool that served the load
    ideal_time: float
    work_per_slot: float
    efficiency: float | None
    efficiency_work_per_slot: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values, q: float, ordered: bool = False) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values (exact); None for no values. `ordered`: the
    values are sorted already (a list or an array('d'))."""
    if not len(values):
        return None
    ordered = values if ordered else sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def distribution(values) -> Distribution:
    """p50/p95/p99/max/mean of a list or array('d'), sorted once (an array stays an array: 8 bytes a value)."""
    if not len(values):
        return Distribution(None, None, None, None, None)
    ordered = type(values)("d", sorted(values)) if not isinstance(values, list) else sorted(values)
    p50, p95, p99 = (percentile(ordered, q, ordered=True) for q in (50, 95, 99))
    return Distribution(p50, p95, p99, ordered[-1], statistics.fmean(ordered))


def ideal_time(executions: list[float], slots: int) -> float:
    """Lower bound on the time one pool needs for these tasks on `slots` slots: the work spread evenly,
    but no less than ceil(tasks / slots) of the shortest task in a row, nor the longest task (a steady
    pool's ideal_on)."""
    return ideal_on(executions, [(0.0, slots)])


def reason(error: str | None, state: str) -> str:
    """A failure's reason as the report counts it: its error's kind (the text before the first colon)."""
    return (error or state).split(":", 1)[0].strip()[:100] or state


def _reasons(table: SampleTable, rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        if table.state[r] != SUCCEEDED:
            key = reason(table.errors.get(r), "unknown" if table.state[r] == UNKNOWN else "failed")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _task_load(table: SampleTable, task: str, pool: str) -> TaskLoad:
    rows = list(table.rows(task))
    states = [table.state[r] for r in rows]
    return TaskLoad(
        pool=pool,
        tasks=len(rows),
        completed=states.count(SUCCEEDED),
        failed=states.count(FAILED),
        unknown=states.count(UNKNOWN),
        work=sum(table.executions(task)),
        latency=distribution(table.latencies(task)),
        queue_wait=distribution(table.queue_waits(task)),
        execution=distribution(table.executions(task)),
        failures=_reasons(table, rows),
    )


def _pool_load(settings: Settings, pool: str, table: SampleTable, rows: list[int], slots: int, t0: float) -> PoolLoad:
    done = [r for r in rows if table.state[r] == SUCCEEDED]
    times = [table.execution_time[r] for r in done if not math.isnan(table.execution_time[r])]
    lanes = pool_lanes(table, done, slots, settings.pools[pool].concurrency, t0)
    ideal = ideal_on(times, lanes)
    span = max((table.received_at[r] for r in done), default=t0) - t0
    return PoolLoad(
        tasks=len(rows),
        completed=len(done),
        slots=slots,
        slots_max=sum(n for _, n in lanes),
        work=sum(times),
        work_per_slot=work_bound(sum(times), lanes) if times else 0.0,
        ideal=ideal,
        efficiency=ideal / span if done and span > 0 else None,
    )


def _pools(settings: Settings, table: SampleTable, slots: dict[str, int]) -> dict[str, PoolLoad]:
    """Per pool that served the load (in the config's order): its tasks of every type, on its lanes."""
    pool_of = [settings.pool_for_task(name).name for name in table.task_names]
    rows: dict[str, list[int]] = {pool: [] for pool in settings.pools}
    for r in range(len(table)):
        rows[pool_of[table.task[r]]].append(r)
    t0 = min(table.sent_at, default=0.0)
    return {
        pool: _pool_load(settings, pool, table, mine, slots.get(pool, 0), t0) for pool, mine in rows.items() if mine
    }


def summarise_load(settings: Settings, samples, slots: dict[str, int], wall: float) -> LoadReport:
    """The report of one load run (pure: samples in, numbers out). `samples`: a SampleTable, or Sample objects."""
    table = samples if isinstance(samples, SampleTable) else SampleTable.of(samples)
    completed = table.count(SUCCEEDED)
    types = [name for name in settings.tasks if table.tasks_of(name)]
    pools = _pools(settings, table, slots)
    ideal = max((p.ideal for p in pools.values()), default=0.0)
    work_per_slot = max((p.work_per_slot for p in pools.values() if p.work_per_slot < math.inf), default=0.0)
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
        failure_reasons=_reasons(table, range(len(table))),
        task_types={name: _task_load(table, name, settings.pool_for_task(name).name) for name in types},
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


def _slots(pool: str, load: PoolLoad | None, at_start: int) -> str:
    grew = load is not None and load.slots_max > at_start
    return f"{pool} {at_start}" + (f"->{load.slots_max} (grew during the run)" if grew else "")


def render_task_types(r: LoadReport) -> list[str]:
    """A line per task type: its pool, counts, and its queue wait and execution (p50, p95)."""
    lines = [
        f"{'per task type':<15}{'pool':<10}{'sent':>6}{'ok':>6}{'failed':>7}{'unknown':>8}"
        f"{'wait p50':>9}{'p95':>7}{'exec p50':>9}{'p95':>7}  ms"
    ]
    for name, t in r.task_types.items():
        lines.append(
            f"{name:<15}{t.pool:<10}{t.tasks:>6}{t.completed:>6}{t.failed:>7}{t.unknown:>8}"
            f"{_ms(t.queue_wait.p50):>9}{_ms(t.queue_wait.p95):>7}{_ms(t.execution.p50):>9}{_ms(t.execution.p95):>7}"
        )
    return lines


def render_load(r: LoadReport) -> list[str]:
    lines = [
        f"Tasks: {r.tasks} sent, {r.completed} completed, {r.failed - _unknown_tasks(r)} failed, {_unknown_tasks(r)} unknown, "
        f"{r.retries} retries",
        f"Total time: {r.total_time:.3f}s   throughput: {r.throughput or 0:.1f} tasks/s",
        f"{'ms':<22}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}",
    ]
    for name, d in (("latency (end to end)", r.latency), ("  queue wait", r.queue_wait), ("  execution", r.execution)):
        lines.append(f"{name:<22}{_ms(d.p50):>7}{_ms(d.p95):>7}{_ms(d.p99):>7}{_ms(d.max):>7}")
    lines += render_task_types(r)
    lines += fit("Tasks per worker: " + ", ".join(f"{w} {n}" for w, n in r.per_worker.items()), hang=2)
    slots = ", ".join(_slots(pool, r.pools.get(pool), n) for pool, n in r.slots.items())
    lines += fit(f"Worker slots (replicas x concurrency): {slots}", hang=2)
    lines.append(f"Ideal time: {r.ideal_time:.3f}s (work per slot {r.work_per_slot:.3f}s)")
    lines += fit(
        "Efficiency per pool (ideal / time to its last result): "
        + ", ".join(f"{pool} {_ratio(p.efficiency)}" for pool, p in r.pools.items()),
        hang=2,
    )
    lines.append(
        f"Efficiency (ideal / actual): {_ratio(r.efficiency)} "
        f"(work per slot / actual: {_ratio(r.efficiency_work_per_slot)})"
    )
    if r.failure_reasons:
        lines.append("Failures by reason: " + ", ".join(f"{why} {n}" for why, n in r.failure_reasons.items()))
    lines += [f"FAILED {f['task']} {f['task_id']}: {f['error']}" for f in r.failures[:10]]
    return lines


def render_sweep(runs: list[tuple[int, LoadReport]]) -> list[str]:
    lines = [f"{'size':>4} {'slots':>5} {'time s':>7} {'tasks/s':>8} {'ideal s':>8} {'speed-up':>8} {'efficiency':>10}"]
    base = runs[0][1].total_time if runs else None
    for size, r in runs:
        speedup = base / r.total_time if base and r.total_time else 0
        lines.append(
            f"{size:>4} {sum(r.slots.values()):>5} {r.total_time:>7.3f} {r.throughput or 0:>8.1f} "
            f"{r.ideal_time:>8.3f} {speedup:>7.2f}x {r.efficiency or 0:>10.3f}"
        )
    return lines


# --------------------------------------------------------------------------- the whole test: its runs


@dataclass(frozen=True)
class LoadSpec:
    """The load asked for: tasks of each type, --mix as given (the share of task_a, or {task: weight}), the
    built-ins' durations (None: the config's)."""

    tasks: int
    mix: float | dict[str, float]
    duration_a: float | None
    duration_b: float | None


@dataclass(frozen=True)
class LoadRun:
    """One load at one pool size (None: the pools as they were), every task of it, and how its wait ended."""

    size: int | None
    report: LoadReport
    samples: SampleTable
    broker_lost: str | None = None  # why, when the broker connection was down at the deadline
    pools_lost: dict[str, str] = field(default_factory=dict)  # pool -> its queue without consumers at the end

    def to_json(self) -> dict[str, Any]:
        """The run in the result file: its report and every sample (streamed, never all in memory)."""
        return {
            "size": self.size,
            "report": self.report.to_json(),
            "samples": Stream(s.to_json() for s in self.samples),
        }


@dataclass(frozen=True)
class LoadTestReport:
    """A load test: the load, its runs (one, or one per size of a sweep) and the thresholds they missed."""

    config: str  # the config file's path
    load: LoadSpec
    runs: tuple[LoadRun, ...]
    problems: tuple[str, ...] = ()

    @property
    def broker_lost(self) -> str | None:
        return next((r.broker_lost for r in self.runs if r.broker_lost), None)

    @property
    def pools_lost(self) -> dict[str, str]:
        return next((r.pools_lost for r in self.runs if r.pools_lost), {})

    def unknown(self) -> int:
        """Tasks without a result at the deadline, over every run."""
        return sum(r.samples.count(UNKNOWN) for r in self.runs)

    def to_json(self) -> dict[str, Any]:
        """The result file's body (docs/reference/result-files.md)."""
        return {
            "config": self.config,
            "load": asdict(self.load),
            "runs": [r.to_json() for r in self.runs],
            "problems": list(self.problems),
            "broker_lost": self.broker_lost,
            "pools_lost": self.pools_lost,
        }

    def summary_json(self) -> dict[str, Any]:
        """--json on stdout: the same without the samples, each run's report under `reports`."""
        body = {k: v for k, v in self.to_json().items() if k != "runs"}
        return body | {"reports": [r.report.to_json() for r in self.runs]}


def render_load_test(test: LoadTestReport) -> list[str]:
    """A sweep (runs with a size) as its table, else the run's report; then each problem on a line."""
    sweep = [(r.size, r.report) for r in test.runs if r.size is not None]
    lines = render_sweep(sweep) if sweep else render_load(test.runs[-1].report)
    return lines + [f"FAILED: {p}" if "task(s) " in p else f"THRESHOLD: {p}" for p in test.problems]
