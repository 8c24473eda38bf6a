"""The dispatch report: each task's outcome (checked for isolation), the round's summary, the statistics
of several rounds, and their renderings: the summary table, the lines under it, --quiet's results, JSON.

    outcome = success("task_a", task_id, "worker-a", result)      # or TaskOutcome(..., error=..., unknown=...)
    report = dispatch_report(settings, [(outcomes, summarise_dispatch(outcomes, total))])
    print("\\n".join(render_dispatch(report)))                     # or json.dumps(report.to_json())
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from dts.config import Settings
from dts.config.schema import DEFAULT_ROUTES
from dts.errors import ExitCode
from dts.naming import pool_of_node
from dts.reports.console import fit, table_lines
from dts.reports.documents import SCHEMA_VERSION


def label(task: str) -> str:
    """'task_a' -> 'Task A' (the built-ins, as the challenge prints them); a task of your own: its name."""
    return "Task " + task[-1].upper() if task in DEFAULT_ROUTES else task


@dataclass(frozen=True)
class TaskOutcome:
    task: str
    task_id: str
    pool: str  # the pool that owns the task's queue
    result: dict[str, Any] | None = None  # the task's return value on success
    error: str | None = None  # why it failed or went missing
    isolation_breach: str | None = None
    unknown: bool = False  # no result by the deadline: it may still be queued, running, or have run
    output: dict[str, Any] | None = None  # a failed command task's exit code, output tails and report

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
    if exc_type == "CallFailed":  # a task of your own: the text names the callable's exception itself
        return text
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
    import statistics  # on use (--repeat): ~2.5 ms of every dispatch's start otherwise

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
# the table's layout (table_lines): the Result column gives way, cut with "…" (each result follows in full)
DISPATCH_LAYOUT = {"shrink": 1}


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


def challenge_lines(outcomes: tuple[TaskOutcome, ...] | list[TaskOutcome]) -> list[str]:
    """Per task, the challenge's own lines: `Result from task_a: Hello from Task A` (a long one goes on
    under its result), its execution time (a task without a result has none) and its retries."""
    lines = []
    for o in outcomes:
        said = o.result["message"] if o.ok else f"{o.state.upper()}: {o.error or o.isolation_breach}"
        lines += fit(f"Result from {o.task}: {said}", hang=len(f"Result from {o.task}: "))
        if o.result:
            lines.append(f"{label(o.task)} execution time: {o.result['execution_time']:.3f}s")
        lines.append(f"{label(o.task)} retries: {o.retries}")
    return lines


def dispatch_totals(report: DispatchReport) -> list[str]:
    """The lines under the table: the challenge's lines per task, wall time, counts, fastest/slowest,
    sequential time, speed-up, retries, isolation."""
    s, outcomes = report.summary, report.outcomes
    ok = [o for o in outcomes if o.ok]
    unknown = [o for o in outcomes if o.unknown]
    counts = f"Tasks: {len(ok)} succeeded, {len(outcomes) - len(ok) - len(unknown)} failed"
    if unknown:
        counts += f", {len(unknown)} unknown ({', '.join(o.task_id for o in unknown)})"
    if ok:
        fastest = min(ok, key=lambda o: o.result["execution_time"])
        slowest = max(ok, key=lambda o: o.result["execution_time"])
        counts += f"; fastest {fastest.task} {fastest.result['execution_time']:.3f}s, "
        counts += f"slowest {slowest.task} {slowest.result['execution_time']:.3f}s"
    lines = [*challenge_lines(outcomes), f"Total dispatcher time: {s.total_time:.3f}s (concurrent execution)", counts]
    if not s.failed:  # the sum of the execution times: running them one after the other would take at least that
        lines.append(f"Sequential time would be: {s.sum_execution_time:.3f}s")
    if not s.failed and s.total_retries:
        lines.append(
            f"Time includes backoff waits of up to {s.max_backoff:.3f}s per task (no speed-up: there were retries)"
        )
    elif not s.failed:
        lines.append(
            f"Speed-up from concurrency: {s.speedup:.2f}x; overhead beyond the longest task: {s.overhead * 1000:.1f} ms"
        )
    lines.append(f"Total retries: {s.total_retries}")
    lines += [f"{o.task} ISOLATION BREACH: {o.isolation_breach}" for o in outcomes if o.isolation_breach]
    if s.failed:
        lines.append(f"FAILED: {', '.join(s.failed)}")
    else:
        lines.append("Isolation: OK (" + ", ".join(f"{o.task} on {o.pool}" for o in outcomes) + ")")
    r = report.repeat
    if r and r.overhead_median is not None:
        lines.append(
            f"Over {r.rounds} rounds: total time median {r.total_median * 1000:.1f} ms; overhead median "
            f"{r.overhead_median * 1000:.1f} ms (min {r.overhead_min * 1000:.1f}, max {r.overhead_max * 1000:.1f})"
        )
    return lines


def render_dispatch(report: DispatchReport) -> list[str]:
    """The summary as plain text: the table, then the totals."""
    return table_lines(DISPATCH_COLUMNS, dispatch_rows(report), **DISPATCH_LAYOUT) + dispatch_totals(report)


def bare_results(report: DispatchReport) -> list[str]:
    """--quiet: one line per task, its result or why it failed."""
    return [
        f"{o.task}: {o.result['message']}" if o.ok else f"{o.task}: {o.state.upper()}: {o.error or o.isolation_breach}"
        for o in report.outcomes
    ]
