"""Plain Celery, as a user writes it first: the "naive" side of `make bench` (bench/run.py).

Celery's defaults everywhere (early acks, prefetch multiplier 4, no publisher confirms, no task events,
queues Celery creates on demand) except what the scenario needs: the `rpc://` result backend and two tasks
routed to queue_a / queue_b. Every task is sent with `delay()`; results are collected with a ResultSet.

    NAIVE_BROKER_URL=amqp://guest:guest@localhost:5672/dts-bench-naive \\
        celery -A bench.naive worker -Q queue_a -c 1 -n naive-a@%h     # one worker per queue
    python -m bench.naive load --tasks 2000     # 2000 task_a + 2000 task_b, no-op: {"throughput": ...}
    python -m bench.naive rtt --rate 100 --seconds 3                   # {"p50": ..., "p99": ...} seconds
    python -m bench.naive seed --rounds 10 --duration-a 0.1 --duration-b 0.2   # {"overhead_median": ...}

Each command prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from celery import Celery
from celery.result import ResultSet

from bench.table import round_trips

app = Celery(
    "bench.naive", broker=os.environ.get("NAIVE_BROKER_URL", "amqp://guest:guest@localhost:5672//"), backend="rpc://"
)
app.conf.task_routes = {"bench.naive.task_a": {"queue": "queue_a"}, "bench.naive.task_b": {"queue": "queue_b"}}


def work(name: str, duration: float) -> dict:
    t0 = time.perf_counter()
    if duration:
        time.sleep(duration)
    return {"task": name, "execution_time": time.perf_counter() - t0}


@app.task
def task_a(duration: float = 0.0) -> dict:
    return work("task_a", duration)


@app.task
def task_b(duration: float = 0.0) -> dict:
    return work("task_b", duration)


def load(tasks: int, timeout: float) -> dict:
    """tasks x task_a + tasks x task_b, interleaved, no work; time from the first delay() to the last result."""
    task_a.delay().get(timeout=timeout)  # the connection and the reply queue, before the clock (like warm_up)
    t0 = time.perf_counter()
    results = ResultSet([(task_a if i % 2 == 0 else task_b).delay() for i in range(2 * tasks)])
    published = time.perf_counter() - t0
    results.get(timeout=timeout)
    wall = time.perf_counter() - t0
    return {"tasks": 2 * tasks, "wall": wall, "publish_seconds": published, "throughput": 2 * tasks / wall}


def rtt(rate: float, seconds: float, timeout: float) -> dict:
    """One no-op task every 1/rate s (a then b), each waited for: send -> result times."""
    task_a.delay().get(timeout=timeout)
    interval, n = 1.0 / rate, max(1, round(rate * seconds))
    times = []
    t0 = time.perf_counter()
    for i in range(n):
        pause = t0 + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        (task_a if i % 2 == 0 else task_b).delay().get(timeout=timeout)
        times.append(time.perf_counter() - start)
    wall = time.perf_counter() - t0
    return round_trips(times, rate, wall)


def seed(rounds: int, duration_a: float, duration_b: float, timeout: float) -> dict:
    """The seed scenario: task_a and task_b at once, both results awaited; overhead = total - longer task."""
    ResultSet([task_a.delay(), task_b.delay()]).get(timeout=timeout)  # warm-up round, not counted
    overheads = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        got = ResultSet([task_a.delay(duration_a), task_b.delay(duration_b)]).get(timeout=timeout)
        total = time.perf_counter() - t0
        overheads.append(total - max(r["execution_time"] for r in got))
    return {
        "rounds": rounds,
        "overhead_median": statistics.median(overheads),
        "overhead_min": min(overheads),
        "overhead_max": max(overheads),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for results")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("load").add_argument("--tasks", type=int, default=2000)
    p = sub.add_parser("rtt")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("seed")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--duration-a", type=float, default=0.1)
    p.add_argument("--duration-b", type=float, default=0.2)
    args = parser.parse_args(argv)
    try:
        if args.command == "load":
            out = load(args.tasks, args.timeout)
        elif args.command == "rtt":
            out = rtt(args.rate, args.seconds, args.timeout)
        else:
            out = seed(args.rounds, args.duration_a, args.duration_b, args.timeout)
    except KeyboardInterrupt:
        return 130
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
