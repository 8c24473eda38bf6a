"""The project's side of `make bench` that its CLIs do not measure on their own (bench/run.py runs it as a
subprocess, with DTS_CONFIG / BROKER_URL pointing at the bench vhost):

    python -m bench.ours rtt --rate 100 --seconds 3   # one no-op task every 10 ms, each waited for
    python -m bench.ours publish --tasks 2000         # the load generator's publish phase alone (no consumers)
    python -m bench.ours kinds --rate 50 --seconds 3  # a no-op of each kind of task, interleaved, and fork/exec

`rtt` sends like dispatch.py does (`dts.amqp.publish.TaskPublisher` on the run's ReplyQueue connection,
connections warmed up first) and waits for each result on that ReplyQueue. `publish` times the same
publisher (one channel, confirms settled in batches) for 2 x tasks no-op tasks into queues nobody
consumes. `kinds` round-trips a no-op of each kind of task on one worker, in turn (the built-in task_a
with duration 0, a callable, a command: KINDS, declared by bench/run.py's config), and times a bare
fork/exec of `true` from Python, in the same run. Each command prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kombu.utils.uuid import uuid

from bench.table import round_trips

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dts.amqp.checks import warm_up
from dts.amqp.replies import ReplyQueue
from dts.app import SIMULATED, make_app
from dts.config import load_settings

KINDS = {"builtin": ("task_a", {"duration": 0}), "call": ("noop_call", {}), "command": ("noop_command", {})}


def paced_round_trips(app, settings, plan: list[tuple[str, dict]], rate: float, seconds: float, timeout: float):
    """The tasks of `plan` in turn, one every 1/rate s, each waited for (each plan entry warmed up once, not
    counted): {index in plan: [send -> result seconds]}, and the wall time."""
    from dts.amqp.publish import TaskPublisher

    warm_up(app)
    with ReplyQueue(app) as replies:
        publisher = TaskPublisher(app, settings, replies, sent_events=settings.monitoring.task_events)

        def round_trip(name: str, kwargs: dict) -> float:
            start = time.perf_counter()
            task_id = uuid()
            replies.expect(task_id)  # before it is sent: a later step of the publish may read its result
            publisher.publish(name, task_id, kwargs)
            got = replies.collect({task_id}, time.monotonic() + timeout)
            if task_id not in got.results:
                raise RuntimeError(f"no result for {name} {task_id} within {timeout:g}s")
            if got.results[task_id].get("status") != "SUCCESS":
                raise RuntimeError(f"{name} {task_id} did not succeed: {got.results[task_id].get('result')}")
            return time.perf_counter() - start

        for name, kwargs in plan:
            round_trip(name, kwargs)
        interval, n = 1.0 / rate, max(len(plan), round(rate * seconds))
        times: dict[int, list[float]] = {i: [] for i in range(len(plan))}
        t0 = time.perf_counter()
        for i in range(n):
            pause = t0 + i * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            times[i % len(plan)].append(round_trip(*plan[i % len(plan)]))
        return times, time.perf_counter() - t0


def rtt(app, settings, rate: float, seconds: float, timeout: float) -> dict:
    """One no-op task every 1/rate s (a then b), each waited for: send -> result times."""
    plan = [("task_a", {"duration": 0}), ("task_b", {"duration": 0})]
    times, wall = paced_round_trips(app, settings, plan, rate, seconds, timeout)
    return round_trips(times[0] + times[1], rate, wall)


def fork_exec(runs: int = 200) -> dict:
    """A bare fork/exec of `true` from Python (subprocess.run), the floor under a command task's cost."""
    import subprocess

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        times.append(time.perf_counter() - start)
    return round_trips(times, 0.0, sum(times))


def kinds(app, settings, rate: float, seconds: float, timeout: float) -> dict:
    """A no-op of each kind of task, in turn on one worker (the same noise for each), and fork/exec."""
    plan = list(KINDS.values())
    times, wall = paced_round_trips(app, settings, plan, rate, seconds, timeout)
    out = {kind: round_trips(times[i], rate / len(plan), wall) for i, kind in enumerate(KINDS)}
    return out | {"fork_exec": fork_exec()}


def publish_only(app, settings, tasks: int) -> dict:
    """The load generator's publish phase alone: 2 x tasks no-op tasks through dts.runs.loadgen's TaskPublisher
    (confirms settled in batches), timed until the broker has confirmed every one."""
    from dts.amqp.publish import TaskPublisher
    from dts.runs.loadgen import PUMP_EVERY, interleave, task_plan

    order = interleave(task_plan(tasks, dict.fromkeys(SIMULATED, 1)))
    kwargs = {name: {"duration": 0} for name in SIMULATED}
    warm_up(app)
    with ReplyQueue(app, keep=False) as replies:
        publisher = TaskPublisher(app, settings, replies)
        t0 = time.perf_counter()
        for n, name in enumerate(order):
            publisher.publish(name, uuid(), kwargs[name])
            if n % PUMP_EVERY == 0:
                replies.pump(timeout=0.0001)
        while publisher.unconfirmed():
            replies.pump(timeout=0.05)
        seconds = time.perf_counter() - t0
    if publisher.confirms.refused:
        raise RuntimeError(f"the broker refused {publisher.confirms.refused} publish(es)")
    return {"tasks": publisher.published, "seconds": seconds, "rate": publisher.published / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ours", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one result")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rtt")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=3.0)
    sub.add_parser("publish").add_argument("--tasks", type=int, default=2000)
    k = sub.add_parser("kinds")
    k.add_argument("--rate", type=float, default=60.0)
    k.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    settings = load_settings()
    app = make_app(settings)
    try:
        if args.command in ("rtt", "kinds"):
            out = {"rtt": rtt, "kinds": kinds}[args.command](app, settings, args.rate, args.seconds, args.timeout)
        else:
            out = publish_only(app, settings, args.tasks)
    except KeyboardInterrupt:
        return 130
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
