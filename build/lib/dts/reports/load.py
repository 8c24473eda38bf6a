"""The load test's report: per run, the latency distributions (end to end, queue wait, execution), the
tasks per worker, the ideal time on the live worker slots and the efficiency; the thresholds it missed;
and the whole test (its runs, at one size or a sweep of sizes) as text and as its result file's JSON.

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
from dts.reports.documents import Stream
from dts.runs.samples import SUCCEEDED, UNKNOWN, SampleTable


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
    but no less than ceil(tasks / slots) of the shortest task in a row, nor the longest task."""
    if not executions:
        return 0.0
    if slots < 1:
        return math.inf
    return max(sum(executions) / slots, math.ceil(len(executions) / slots) * min(executions), max(executions))


def _pool_load(settings: Settings, task: str, table: SampleTable, slots: dict[str, int]) -> PoolLoad:
    pool = settings.pool_for_task(task).name
    times, n = list(table.executions(task)), slots.get(pool, 0)
    return PoolLoad(table.tasks_of(task), len(times), pool, n, work=sum(times), ideal=ideal_time(times, n))


def summarise_load(settings: Settings, samples, slots: dict[str, int], wall: float) -> LoadReport:
    """The report of one load run (pure: samples in, numbers out). `samples`: a SampleTable, or Sample objects."""
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
    lines.append(
        f"Worker slots (replicas x concurrency): {slots}; ideal time {r.ideal_time:.3f}s "
        f"(work per slot {r.work_per_slot:.3f}s)"
    )
    lines.append(
        f"Efficiency (ideal / actual): {_ratio(r.efficiency)} "
        f"(work per slot / actual: {_ratio(r.efficiency_work_per_slot)})"
    )
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
    """The load asked for: tasks of each type, the share of task_a, the task durations (None: the config's)."""

    tasks: int
    mix: float
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
