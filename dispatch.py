"""Dispatch one task_a and one task_b concurrently and report results, timings, retries and isolation.

python dispatch.py                      # default config (test-config.yml)
python dispatch.py --fail-rate 0.5      # inject transient failures to watch the backoff
python dispatch.py --json               # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from broker import check_broker, redact_url, require_consumers, warm_up
from celery_app import TASKS, Config, ExitCode, load_config, pool_of_worker, use_config
from cli import non_negative_int, positive_float, positive_int, probability, run_main

log = logging.getLogger("dts.dispatch")


@dataclass
class Outcome:
    task: str
    task_id: str
    result: dict[str, Any] | None = None  # the task's return value on success
    error: str | None = None  # why it failed or went missing
    isolation_breach: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None and self.isolation_breach is None


# --------------------------------------------------------------------------- pure helpers


def label(task: str) -> str:
    """'task_a' -> 'Task A'"""
    return "Task " + task.rsplit("_", 1)[-1].upper()


def isolation_breach(task: str, result: dict[str, Any], config: Config) -> str | None:
    """None when the task ran on a worker of the pool that owns its queue, else what ran where."""
    expected = config.pool_for_task(task).name
    actual = pool_of_worker(result.get("worker") or "")
    if actual != expected:
        return f"{task} ran on {result.get('worker')} (pool {actual}), expected a {expected} worker"
    return None


def send_order(config: Config, overrides: dict[str, Any]) -> list[str]:
    """Longest expected task first, so that the task that bounds the total starts first."""
    duration = overrides.get("duration")
    return sorted(TASKS, key=lambda name: -(config.tasks[name].duration if duration is None else duration))


def retries_of(outcome: Outcome) -> int:
    """Retries of a task: from its result, or for a task that gave up, from its error."""
    if outcome.result:
        return outcome.result["retries"]
    match = re.search(r"gave up after (\d+) attempts", outcome.error or "")
    return int(match.group(1)) - 1 if match else 0


def summarise(outcomes: list[Outcome], total: float) -> dict[str, Any]:
    times = [o.result["execution_time"] for o in outcomes if o.result]
    work = sum(times)
    return {
        "total_time": round(total, 6),
        "sum_execution_time": round(work, 6),
        "longest_execution_time": round(max(times, default=0.0), 6),
        "overhead": round(total - max(times, default=0.0), 6),
        "speedup": round(work / total, 3) if total > 0 else None,
        "total_retries": sum(retries_of(o) for o in outcomes),
        "max_backoff": round(max((sum(o.result["retry_delays"]) for o in outcomes if o.result), default=0.0), 6),
        "failed": [o.task for o in outcomes if not o.ok],
    }


def repeat_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    overheads = [s["overhead"] for s in summaries if not s["failed"]]
    totals = [s["total_time"] for s in summaries if not s["failed"]]
    return {
        "rounds": len(summaries),
        "failed_rounds": sum(1 for s in summaries if s["failed"]),
        "total_median": statistics.median(totals) if totals else None,
        "overhead_median": statistics.median(overheads) if overheads else None,
        "overhead_min": min(overheads, default=None),
        "overhead_max": max(overheads, default=None),
    }


def format_report(config: Config, outcomes: list[Outcome], summary: dict[str, Any]) -> list[str]:
    lines = []
    for o in outcomes:
        name = label(o.task)
        if o.result:
            r = o.result
            lines.append(f"Result from {o.task}: {r['message']}")
            lines.append(f"{name} worker: {r['worker']} ({r['queue']})")
            lines.append(f"{name} execution time: {r['execution_time']:.3f}s")
            delays = ", ".join(f"{d:.2f}s" for d in r["retry_delays"])
            lines.append(f"{name} retries: {r['retries']}" + (f" (backoff {delays})" if delays else ""))
        if o.error:
            lines.append(f"{name} FAILED: {o.error}")
        if o.isolation_breach:
            lines.append(f"{name} ISOLATION BREACH: {o.isolation_breach}")
    lines.append(f"Total dispatcher time: {summary['total_time']:.3f}s (concurrent execution)")
    if not summary["failed"] and summary["total_retries"]:
        lines.append(
            f"Time includes backoff waits of up to {summary['max_backoff']:.3f}s per task; "
            "speed-up is reported for runs without retries"
        )
    elif not summary["failed"]:
        lines.append(
            f"Sum of task execution times: {summary['sum_execution_time']:.3f}s "
            f"(what running them one after the other would take at least)"
        )
        lines.append(
            f"Speed-up from concurrency: {summary['speedup']:.2f}x; "
            f"overhead beyond the longest task: {summary['overhead'] * 1000:.1f} ms"
        )
    lines.append(f"Total retries: {summary['total_retries']}")
    if summary["failed"]:
        lines.append(f"FAILED: {', '.join(summary['failed'])}")
    else:
        pools = ", ".join(f"{o.task} on {pool_of_worker(o.result['worker'])}" for o in outcomes)
        lines.append(f"Isolation: OK ({pools})")
    return lines


# --------------------------------------------------------------------------- I/O


def dispatch(config: Config, timeout: float, overrides: dict[str, Any], announce) -> tuple[list[Outcome], float]:
    """Send both tasks, then collect both results under one deadline. Returns outcomes and total time."""
    t0 = time.perf_counter()
    sent = {name: TASKS[name].apply_async(kwargs=overrides) for name in send_order(config, overrides)}
    for name, res in sorted(sent.items()):
        announce(f"{label(name)} sent with ID: {res.id}")
        log.info("sent %s id=%s queue=%s", name, res.id, config.tasks[name].queue)
    announce("Waiting for results...")
    deadline = time.monotonic() + timeout
    outcomes = []
    for name, res in sorted(sent.items()):
        outcome = Outcome(name, res.id)
        try:
            value = res.get(timeout=max(0.01, deadline - time.monotonic()), propagate=False)
        except CeleryTimeout:
            outcome.error = (
                f"no result within {timeout:g}s (task {res.id} is still queued or running; state {res.state})"
            )
        else:
            if res.successful():
                outcome.result = value
                outcome.isolation_breach = isolation_breach(name, value, config)
            else:
                outcome.error = f"{type(value).__name__}: {value}"
        outcomes.append(outcome)
    return outcomes, time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatch.py",
        description="Send task_a and task_b concurrently; print results, execution times, retries and total time.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  python dispatch.py                       run once with test-config.yml
  python dispatch.py --fail-rate 0.5       each attempt fails with p=0.5: watch the retries back off
  python dispatch.py --fail-times 2        the first 2 attempts of each task fail, the third succeeds
  python dispatch.py --json | jq .summary  machine-readable output
  python dispatch.py --repeat 10           benchmark: median overhead over 10 rounds

exit codes: 0 ok, 1 a task failed or isolation was breached, 2 bad usage or config,
            3 broker unreachable, 4 a queue has no consumer""",
    )
    parser.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    parser.add_argument(
        "--timeout", type=positive_float, help="seconds to wait for results (default: dispatch.timeout)"
    )
    parser.add_argument(
        "--fail-rate", type=probability, metavar="P", help="probability 0..1 that an attempt fails (both tasks)"
    )
    parser.add_argument(
        "--fail-times",
        type=non_negative_int,
        metavar="N",
        default=0,
        help="make the first N attempts of each task fail (N > retry.max_retries fails the task)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        metavar="N",
        help="dispatch N rounds and report median/min/max overhead (a benchmark); prints the last round",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr (-vv: debug)")
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    use_config(config)
    from celery_app import app

    timeout = args.timeout or config.dispatch_timeout
    overrides = {"fail_times": args.fail_times} if args.fail_times else {}
    if args.fail_rate is not None:
        overrides["failure_rate"] = args.fail_rate
    quiet = args.json
    announce = (lambda line: None) if quiet else (lambda line: print(line, flush=True))

    announce(f"Loaded config: {config.name}")
    pools = config.pools.values()
    announce(
        f"Expected workers: {sum(p.replicas for p in pools)} ({', '.join(f'{p.name} x{p.replicas}' for p in pools)})"
    )
    log.info("broker %s", redact_url(config.broker_url))
    check_broker(app, config.connect_timeout)
    stats = require_consumers(app, {spec.queue: config.pool_for_task(name).name for name, spec in config.tasks.items()})
    announce("Consumers: " + ", ".join(f"{q} {s.consumers}" for q, s in stats.items()))
    warm_up(app)
    announce("Dispatching tasks...")
    rounds = []
    for n in range(args.repeat):
        outcomes, total = dispatch(config, timeout, overrides, announce if n == 0 else (lambda line: None))
        rounds.append((outcomes, summarise(outcomes, total)))
        if args.repeat > 1:
            log.info(
                "round %d/%d: total %.3fs overhead %.1f ms", n + 1, args.repeat, total, rounds[-1][1]["overhead"] * 1000
            )
    outcomes, summary = rounds[-1]
    failed = any(s["failed"] for _, s in rounds)
    code = ExitCode.FAILED if failed else ExitCode.OK
    repeat = repeat_summary([s for _, s in rounds]) if args.repeat > 1 else None
    if quiet:
        doc = {
            "config": {"name": config.name, "path": str(config.path)},
            "tasks": [{"task": o.task, "task_id": o.task_id, "ok": o.ok, "result": o.result, "error": o.error,
                       "isolation_breach": o.isolation_breach} for o in outcomes],
            "summary": summary,
            "repeat": repeat,
            "exit_code": int(code),
        }  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        for line in format_report(config, outcomes, summary):
            print(line)
        if repeat:
            print(
                f"Over {repeat['rounds']} rounds: total time median {repeat['total_median'] * 1000:.1f} ms; "
                f"overhead median {repeat['overhead_median'] * 1000:.1f} ms "
                f"(min {repeat['overhead_min'] * 1000:.1f}, max {repeat['overhead_max'] * 1000:.1f})"
            )
    return code


def main(argv: list[str] | None = None) -> int:
    return run_main("dispatch.py", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
