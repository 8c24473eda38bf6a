"""Load test: send TASKS of each task type, collect results as they complete, and report what the
current pool sizes buy: throughput, latency (queue wait + execution), fairness, ideal time, efficiency.

    python load_test.py --tasks 20                  # 20 task_a + 20 task_b on the running pools
    python load_test.py --tasks 40 --sweep 1,2,4,8  # rescale both pools to each size, same load each time
    python load_test.py --tasks 20 --output results/run.json --plot results/run.png
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import ResultSet

from broker import check_broker, require_consumers, warm_up
from celery_app import TASKS, CliError, Config, ExitCode, load_config, pool_of_worker, use_config
from cli import non_negative_float, positive_float, positive_int, probability, run_main

log = logging.getLogger("dts.load_test")
SCHEMA_VERSION = 1


@dataclass
class Sample:
    """One task of the load: when it was sent and, once it completed, what came back."""

    task: str
    task_id: str
    sent_at: float  # wall clock (time.time()) on the client
    received_at: float | None = None
    status: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


# --------------------------------------------------------------------------- pure helpers


def task_plan(tasks: int, mix: float) -> dict[str, int]:
    """2 × tasks in all; `mix` is the share of task_a (0.5 = as many of each, like the seed)."""
    total = 2 * tasks
    n_a = round(total * mix)
    return {"task_a": n_a, "task_b": total - n_a}


def interleave(plan: dict[str, int]) -> list[str]:
    """The send order: types spread evenly (a, b, a, b, ...) so neither pool waits for the other's tasks."""
    total = sum(plan.values())
    keyed = [(i * total / n, name) for name, n in plan.items() for i in range(n)]
    return [name for _, name in sorted(keyed)]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values, default=None),
        "mean": statistics.fmean(values) if values else None,
    }


def ideal_time(executions: list[float], slots: int) -> float:
    """Lower bound on the time one pool needs for these tasks on `slots` slots: the work spread evenly,
    but no less than ceil(tasks / slots) of the shortest task in a row, nor the longest task."""
    if not executions:
        return 0.0
    if slots < 1:
        return math.inf
    return max(sum(executions) / slots, math.ceil(len(executions) / slots) * min(executions), max(executions))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"--sweep takes pool sizes like 1,2,4,8 (got {text!r})", ExitCode.USAGE) from None
    if not sizes or any(n < 1 for n in sizes):
        raise CliError(f"--sweep sizes must be integers >= 1 (got {text!r})", ExitCode.USAGE)
    return sizes


def summarise(samples: list[Sample], slots: dict[str, int], wall: float) -> dict[str, Any]:
    """The report of one load run (pure: samples in, numbers out)."""
    done = [s for s in samples if s.result is not None]
    failed = [s for s in samples if s.result is None]
    latency = [s.received_at - s.sent_at for s in done]
    queue_wait = [max(0.0, datetime.fromisoformat(s.result["started_at"]).timestamp() - s.sent_at) for s in done]
    execution = [s.result["execution_time"] for s in done]
    per_worker: dict[str, int] = {}
    for s in done:
        per_worker[s.result["worker"]] = per_worker.get(s.result["worker"], 0) + 1
    pools = {}
    for task in TASKS:
        mine = [s for s in done if s.task == task]
        pool = pool_of_worker(mine[0].result["worker"]) if mine else None
        pools[task] = {
            "tasks": sum(1 for s in samples if s.task == task),
            "completed": len(mine),
            "pool": pool,
            "slots": slots.get(pool, 0) if pool else 0,
            "work": sum(s.result["execution_time"] for s in mine),
            "ideal": ideal_time([s.result["execution_time"] for s in mine], slots.get(pool, 0) if pool else 0),
        }
    ideal = max((p["ideal"] for p in pools.values()), default=0.0)
    work_per_slot = max((p["work"] / p["slots"] for p in pools.values() if p["slots"]), default=0.0)
    return {
        "tasks": len(samples),
        "completed": len(done),
        "failed": len(failed),
        "failures": [{"task": s.task, "task_id": s.task_id, "error": s.error} for s in failed],
        "retries": sum(s.result["retries"] for s in done),
        "total_time": wall,
        "throughput": len(done) / wall if wall > 0 else None,
        "latency": distribution(latency),
        "queue_wait": distribution(queue_wait),
        "execution": distribution(execution),
        "per_worker": dict(sorted(per_worker.items())),
        "slots": slots,
        "pools": pools,
        "ideal_time": ideal,
        "work_per_slot": work_per_slot,
        "efficiency": ideal / wall if wall > 0 and done else None,
        "efficiency_work_per_slot": work_per_slot / wall if wall > 0 and done else None,
    }


def threshold_failures(report: dict[str, Any], config: Config) -> list[str]:
    problems = []
    if report["failed"]:
        problems.append(f"{report['failed']} task(s) failed or did not complete")
    eff = report["efficiency"]
    if config.min_efficiency and (eff is None or eff < config.min_efficiency):
        problems.append(f"efficiency {eff:.3f} below load_test.min_efficiency {config.min_efficiency:g}")
    p95 = report["latency"]["p95"]
    if config.max_p95 and (p95 is None or p95 > config.max_p95):
        problems.append(f"p95 latency {p95:.3f}s above load_test.max_p95 {config.max_p95:g}s")
    return problems


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def format_report(report: dict[str, Any]) -> list[str]:
    r = report
    lines = [
        f"Tasks: {r['tasks']} sent, {r['completed']} completed, {r['failed']} failed, {r['retries']} retries",
        f"Total time: {r['total_time']:.3f}s   throughput: {r['throughput'] or 0:.1f} tasks/s",
        f"{'ms':<22}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}",
    ]
    for key, name in (
        ("latency", "latency (end to end)"),
        ("queue_wait", "  queue wait"),
        ("execution", "  execution"),
    ):
        d = r[key]
        lines.append(f"{name:<22}{_ms(d['p50']):>7}{_ms(d['p95']):>7}{_ms(d['p99']):>7}{_ms(d['max']):>7}")
    lines.append("Tasks per worker: " + ", ".join(f"{w} {n}" for w, n in r["per_worker"].items()))
    slots = ", ".join(f"{pool} {n}" for pool, n in r["slots"].items())
    lines.append(
        f"Worker slots (processes x concurrency): {slots}; ideal time {r['ideal_time']:.3f}s "
        f"(work per slot {r['work_per_slot']:.3f}s)"
    )
    eff, plain = r["efficiency"], r["efficiency_work_per_slot"]
    lines.append(
        f"Efficiency (ideal / actual): {'-' if eff is None else f'{eff:.3f}'}"
        f" (work per slot / actual: {'-' if plain is None else f'{plain:.3f}'})"
    )
    for f in r["failures"][:10]:
        lines.append(f"FAILED {f['task']} {f['task_id']}: {f['error']}")
    return lines


def format_sweep(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'size':>4} {'slots':>5} {'time s':>7} {'tasks/s':>8} {'ideal s':>8} {'speed-up':>8} {'efficiency':>10}"]
    base = rows[0]["report"]["total_time"] if rows else None
    for row in rows:
        r = row["report"]
        speedup = base / r["total_time"] if base and r["total_time"] else 0
        eff = r["efficiency"] or 0
        lines.append(
            f"{row['size']:>4} {sum(r['slots'].values()):>5} {r['total_time']:>7.3f} {r['throughput'] or 0:>8.1f} "
            f"{r['ideal_time']:>8.3f} {speedup:>7.2f}x {eff:>10.3f}"
        )
    return lines


# --------------------------------------------------------------------------- I/O


def live_slots(app, config: Config) -> dict[str, int]:
    """Worker slots per pool, from the workers themselves: each live worker's pool max-concurrency,
    counted for the pool whose queue it consumes (inspect active_queues), whatever its name."""
    inspect = app.control.inspect(timeout=2.0)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    pool_of_queue = {spec.queue: name for name, spec in config.pools.items()}
    slots = {pool: 0 for pool in config.pools}
    for worker, consumed in queues.items():
        concurrency = int(stats.get(worker, {}).get("pool", {}).get("max-concurrency", 1))
        for queue in {q["name"] for q in consumed} & set(pool_of_queue):
            slots[pool_of_queue[queue]] += concurrency
    return slots


def publish(app, order: list[str], kwargs: dict[str, dict[str, Any]]) -> list[tuple[Sample, Any]]:
    """Send every task through one producer (one connection, one channel); kwargs per task type."""
    sent = []
    with app.producer_or_acquire() as producer:
        for name in order:
            sent_at = time.time()
            res = TASKS[name].apply_async(kwargs=kwargs[name], producer=producer)
            sent.append((Sample(name, res.id, sent_at), res))
    return sent


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def collect(sent: list[tuple[Sample, Any]], timeout: float, progress: Progress) -> None:
    """Fill in each sample as its result arrives (any order), until all are in or the timeout passes."""
    by_id = {sample.task_id: sample for sample, _ in sent}
    try:
        for task_id, meta in ResultSet([res for _, res in sent]).iter_native(timeout=timeout, interval=0.1):
            sample = by_id.get(task_id)
            if sample is None or sample.status is not None:
                continue
            sample.received_at = time.time()
            sample.status = meta.get("status")
            if sample.status == "SUCCESS":
                sample.result = meta.get("result")
            else:
                exc = meta.get("result")
                sample.error = f"{exc.get('exc_type')}: {exc.get('exc_message')}" if isinstance(exc, dict) else str(exc)
            progress.step()
    except CeleryTimeout:
        pass
    for sample in by_id.values():
        if sample.status is None:
            sample.error = f"no result within {timeout:g}s (still queued or running)"


def task_kwargs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    common = {} if args.fail_rate is None else {"failure_rate": args.fail_rate}
    durations = {"task_a": args.duration_a, "task_b": args.duration_b}
    return {name: dict(common, **({} if d is None else {"duration": d})) for name, d in durations.items()}


def run_load(app, config: Config, args: argparse.Namespace) -> tuple[dict[str, Any], list[Sample]]:
    plan = task_plan(args.tasks, args.mix)
    slots = live_slots(app, config)
    log.info("load: %s; slots %s", plan, slots)
    t0 = time.perf_counter()
    sent = publish(app, interleave(plan), task_kwargs(args))
    log.info("published %d tasks in %.3fs", len(sent), time.perf_counter() - t0)
    collect(sent, args.timeout or config.load_timeout, Progress(len(sent), sys.stderr.isatty() and not args.json))
    wall = time.perf_counter() - t0
    samples = [sample for sample, _ in sent]
    return summarise(samples, slots, wall), samples


def write_plot(report_runs: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install -r requirements-plot.txt", ExitCode.USAGE) from None
    samples = report_runs[-1]["samples"]
    done = [s for s in samples if s["received_at"] is not None and s["ok"]]
    t0 = min(s["sent_at"] for s in samples)
    fig, (hist, timeline) = plt.subplots(1, 2, figsize=(11, 4))
    for task, color in (("task_a", "tab:blue"), ("task_b", "tab:orange")):
        lat = [s["received_at"] - s["sent_at"] for s in done if s["task"] == task]
        hist.hist(lat, bins=20, alpha=0.6, label=task, color=color)
        finished = sorted(s["received_at"] - t0 for s in done if s["task"] == task)
        timeline.step(finished, range(1, len(finished) + 1), where="post", label=task, color=color)
    hist.set(title="End-to-end latency", xlabel="seconds", ylabel="tasks")
    timeline.set(title="Completions over time", xlabel="seconds since first publish", ylabel="tasks completed")
    hist.legend()
    timeline.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_writable(path: Path) -> None:
    """Refuse an output path before the load runs, not after (when the results would be lost)."""
    if path.is_dir():
        raise CliError(f"{path} is a directory: give a file name, e.g. {path / 'run.json'}", ExitCode.USAGE)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}", ExitCode.USAGE) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="load_test.py",
        description="Send a load of task_a/task_b and report throughput, latency, fairness and efficiency.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  python load_test.py --tasks 20                        20 task_a + 20 task_b on the running pools
  python load_test.py --tasks 50 --mix 0.8              100 tasks, 80% task_a
  python load_test.py --tasks 40 --sweep 1,2,4,8        rescale both pools to each size, same load at each
                                                        (the pools are put back to their sizes afterwards)
  python load_test.py --tasks 20 --json --output run.json --plot run.png

efficiency = ideal time / actual time, where the ideal is the lower bound for this load on the live
worker slots (processes x concurrency, asked from the workers): max(work / slots, ceil(tasks / slots) x
shortest task, longest task) per pool.
exit codes: 0 ok, 1 a task failed or a load_test threshold was missed, 2 bad usage or config,
            3 broker unreachable, 4 a queue has no consumer""",
    )
    parser.add_argument("--tasks", type=positive_int, default=20, help="tasks of each type (default 20)")
    parser.add_argument("--mix", type=probability, default=0.5, metavar="F", help="share of task_a, 0..1 (default 0.5)")
    parser.add_argument(
        "--duration-a", type=non_negative_float, metavar="S", help="task_a work, seconds (default: config)"
    )
    parser.add_argument(
        "--duration-b", type=non_negative_float, metavar="S", help="task_b work, seconds (default: config)"
    )
    parser.add_argument("--fail-rate", type=probability, metavar="P", help="probability 0..1 that an attempt fails")
    parser.add_argument("--timeout", type=positive_float, help="seconds to wait for all results (default: config)")
    parser.add_argument("--sweep", metavar="SIZES", help="pool sizes to run the load at, e.g. 1,2,4,8")
    parser.add_argument("--mode", choices=("auto", "docker", "local"), help="worker back end for --sweep")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the report and every sample as JSON")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="latency histogram + completion timeline (matplotlib)")
    parser.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    use_config(config)
    from celery_app import app

    sizes = parse_sizes(args.sweep) if args.sweep else None
    if sizes and max(sizes) > config.max_workers:
        raise CliError(f"--sweep size {max(sizes)} exceeds workers.max_workers={config.max_workers}", ExitCode.USAGE)
    if args.plot and args.plot.suffix.lower() != ".png":
        raise CliError(f"--plot writes a PNG: give a file name ending in .png (got {args.plot})", ExitCode.USAGE)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CliError("--plot needs matplotlib: pip install -r requirements-plot.txt", ExitCode.USAGE)
    for path in (args.output, args.plot):
        if path is not None:
            check_writable(path)
    check_broker(app, config.connect_timeout)
    runs = []
    if sizes:
        from pools import make_backend

        backend = make_backend(config, args.mode or config.worker_mode)
        before = backend.counts()
        try:
            for size in sizes:
                print(f"-- {size} worker(s) per pool", file=sys.stderr)
                backend.scale({pool: size for pool in config.pools})
                runs.append(one_run(app, config, args, size))
        finally:
            print(f"-- back to {before}", file=sys.stderr)
            backend.scale(before)  # leave the pools as the sweep found them
    else:
        runs.append(one_run(app, config, args, None))
    report = runs[-1]["report"]
    problems = [p for r in runs for p in threshold_failures(r["report"], config)]
    doc = {
        "schema": SCHEMA_VERSION,
        "config": str(config.path),
        "load": {"tasks": args.tasks, "mix": args.mix, "duration_a": args.duration_a, "duration_b": args.duration_b},
        "runs": runs,
        "problems": problems,
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(doc, indent=2))
    if args.plot:
        write_plot(runs, args.plot)
    if args.json:
        print(
            json.dumps(
                {k: v for k, v in doc.items() if k != "runs"} | {"reports": [r["report"] for r in runs]}, indent=2
            )
        )
    else:
        print("\n".join(format_sweep(runs) if sizes else format_report(report)))
        for problem in problems:
            print(f"THRESHOLD: {problem}" if "task(s) failed" not in problem else f"FAILED: {problem}")
    return ExitCode.FAILED if problems else ExitCode.OK


def one_run(app, config: Config, args: argparse.Namespace, size: int | None) -> dict[str, Any]:
    require_consumers(app, {spec.queue: config.pool_for_task(name).name for name, spec in config.tasks.items()})
    warm_up(app)
    report, samples = run_load(app, config, args)
    rows = [
        {"task": s.task, "task_id": s.task_id, "sent_at": s.sent_at, "received_at": s.received_at, "ok": s.result is not None,
         "worker": (s.result or {}).get("worker"), "started_at": (s.result or {}).get("started_at"),
         "execution_time": (s.result or {}).get("execution_time"), "retries": (s.result or {}).get("retries"),
         "error": s.error}
        for s in samples
    ]  # fmt: skip
    return {"size": size, "report": report, "samples": rows}


def main(argv: list[str] | None = None) -> int:
    return run_main("load_test.py", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
