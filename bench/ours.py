"""The project's side of `make bench` that its CLIs do not measure on their own (bench/run.py runs it as a
subprocess, with DTS_CONFIG / BROKER_URL pointing at the bench vhost):

    python -m bench.ours rtt --rate 100 --seconds 3   # one no-op task every 10 ms, each waited for
    python -m bench.ours publish --tasks 2000         # the load generator's publish phase alone (no consumers)

`rtt` sends like dispatch.py does (`dts.amqp.publish.TaskPublisher` on the run's ReplyQueue connection,
connections warmed up first) and waits for each result on that ReplyQueue. `publish` times the same
publisher (one channel, confirms settled in batches) for 2 x tasks no-op tasks into queues nobody
consumes. Each command prints one JSON object on stdout.
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


def rtt(app, settings, rate: float, seconds: float, timeout: float) -> dict:
    """One no-op task every 1/rate s (a then b), each waited for: send -> result times."""
    from dts.amqp.publish import TaskPublisher

    names = ["task_a", "task_b"]
    warm_up(app)
    with ReplyQueue(app) as replies:
        publisher = TaskPublisher(app, settings, replies, sent_events=settings.monitoring.task_events)

        def round_trip(name: str) -> float:
            start = time.perf_counter()
            task_id = uuid()
            publisher.publish(name, task_id, {"duration": 0})
            got = replies.collect({task_id}, time.monotonic() + timeout)
            if task_id not in got.results:
                raise RuntimeError(f"no result for {name} {task_id} within {timeout:g}s")
            return time.perf_counter() - start

        round_trip("task_a")  # warm-up, not counted
        interval, n = 1.0 / rate, max(1, round(rate * seconds))
        times = []
        t0 = time.perf_counter()
        for i in range(n):
            pause = t0 + i * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            times.append(round_trip(names[i % 2]))
        wall = time.perf_counter() - t0
    return round_trips(times, rate, wall)


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
    args = parser.parse_args(argv)
    settings = load_settings()
    app = make_app(settings)
    try:
        if args.command == "rtt":
            out = rtt(app, settings, args.rate, args.seconds, args.timeout)
        else:
            out = publish_only(app, settings, args.tasks)
    except KeyboardInterrupt:
        return 130
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
