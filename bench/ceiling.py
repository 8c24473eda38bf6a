"""The ceiling of `make bench`: raw kombu on the same broker, messages the size of a real task message.

    size, msg = task_message(app)                       # headers + body of a real task_a message
    publish_rate(url, msg, n, confirms=True)            # {"messages", "seconds", "rate"}
    publish_consume_rate(url, msg, n, prefetch=100)     # one consumer process, ack each: {"rate", ...}
    round_trip(url, msg, rate=100, seconds=3)           # request -> reply through an echo process: {"p50", "p99"}

The consumer runs in a process of its own (`python -m bench.ceiling consume URL QUEUE N PREFETCH`), as
a worker would: it prints `ready` once it consumes, then one JSON line when it has acked N messages.
The echo process (`python -m bench.ceiling echo URL QUEUE`) answers each message with a persistent reply
published with confirms (as a worker stores a result) to its reply_to, then acks it: the floor of any
task round trip on this broker (two hops, no Celery).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Producer, Queue
from kombu.serialization import dumps
from kombu.utils.uuid import uuid

PROJECT_DIR = Path(__file__).resolve().parent.parent
EXCHANGE = Exchange("bench", type="direct", durable=True)


def task_message(app, name: str = "celery_app.task_a", kwargs: dict | None = None) -> tuple[int, dict[str, Any]]:
    """A real task message of `app` (protocol 2, as apply_async builds it): its body size in bytes (JSON)
    and what to publish it with (body, headers, properties)."""
    msg = app.amqp.as_task_v2(
        uuid(),
        name,
        args=(),
        kwargs=kwargs if kwargs is not None else {"duration": 0},
        reply_to=f"dts.amqp.replies.{uuid()}",
    )
    _, _, body = dumps(msg.body, serializer="json")
    headers = {k: v for k, v in msg.headers.items() if v is not None}
    props = {k: v for k, v in msg.properties.items() if v is not None}
    return len(body) + len(json.dumps(headers)), {"body": msg.body, "headers": headers, "properties": props}


def _queue(name: str) -> Queue:
    return Queue(name, EXCHANGE, routing_key=name, durable=True)


def _publish(conn: Connection, queue: Queue, msg: dict[str, Any], n: int) -> float:
    """Publish n persistent copies of msg (JSON-serialised each time, like a client does); seconds taken."""
    producer = Producer(conn.default_channel, exchange=EXCHANGE, serializer="json")
    t0 = time.perf_counter()
    for _ in range(n):
        producer.publish(
            msg["body"], routing_key=queue.routing_key, headers=msg["headers"], delivery_mode=2, **msg["properties"]
        )
    return time.perf_counter() - t0


def publish_rate(url: str, msg: dict[str, Any], n: int, confirms: bool = True) -> dict[str, float]:
    """n messages into a durable queue nobody consumes, one producer; the queue is deleted afterwards."""
    queue = _queue(f"bench.publish.{uuid()}")
    with Connection(url, transport_options={"confirm_publish": confirms}) as conn:
        queue(conn.default_channel).declare()
        try:
            seconds = _publish(conn, queue, msg, n)
        finally:
            conn.default_channel.queue_delete(queue.name)
    return {"messages": n, "seconds": seconds, "rate": n / seconds, "confirms": confirms}


def publish_consume_rate(
    url: str, msg: dict[str, Any], n: int, prefetch: int = 100, confirms: bool = True, timeout: float = 300.0
) -> dict[str, float]:
    """n messages published (confirms) while one consumer process (prefetch, ack each) drains them: from
    the first publish to the last ack."""
    queue = _queue(f"bench.consume.{uuid()}")
    with Connection(url, transport_options={"confirm_publish": confirms}) as conn:
        queue(conn.default_channel).declare()
        consumer = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", "consume", url, queue.name, str(n), str(prefetch)],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            if consumer.stdout.readline().strip() != "ready":
                raise RuntimeError("the ceiling consumer did not start")
            start = time.time()
            publish_seconds = _publish(conn, queue, msg, n)
            out, _ = consumer.communicate(timeout=timeout)
            done = json.loads(out)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait(timeout=10)
            conn.default_channel.queue_delete(queue.name)
    seconds = done["last_ack"] - start
    return {
        "messages": n,
        "seconds": seconds,
        "rate": n / seconds,
        "publish_seconds": publish_seconds,
        "prefetch": prefetch,
        "confirms": confirms,
    }


def round_trip(url: str, msg: dict[str, Any], rate: float, seconds: float, timeout: float = 10.0) -> dict[str, float]:
    """One message every 1/rate s to an echo process, each reply waited for: send -> reply times."""
    from dts.reports.load_report import percentile

    queue, replies = _queue(f"bench.echo.{uuid()}"), Queue(f"bench.replies.{uuid()}", exclusive=True)
    with Connection(url, transport_options={"confirm_publish": False}) as conn:
        queue(conn.default_channel).declare()
        echo = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", "echo", url, queue.name],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        arrived: list[float] = []
        try:
            if echo.stdout.readline().strip() != "ready":
                raise RuntimeError("the ceiling echo process did not start")
            producer = Producer(conn.default_channel, exchange=EXCHANGE, serializer="json")
            channel = conn.channel()
            with conn.Consumer(
                replies,
                channel=channel,
                callbacks=[lambda b, m: arrived.append(time.perf_counter())],
                accept=["json"],
                no_ack=True,
            ):
                times, interval, n = [], 1.0 / rate, max(2, round(rate * seconds))
                t0 = time.perf_counter()
                for i in range(n + 1):  # the first is a warm-up, not counted
                    pause = t0 + i * interval - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    start, count = time.perf_counter(), len(arrived)
                    producer.publish(
                        msg["body"],
                        routing_key=queue.routing_key,
                        headers=msg["headers"],
                        delivery_mode=2,
                        **dict(msg["properties"], reply_to=replies.name),
                    )
                    deadline = start + timeout
                    while len(arrived) == count:
                        conn.drain_events(timeout=max(0.001, deadline - time.perf_counter()))
                    if i:
                        times.append(arrived[-1] - start)
        finally:
            echo.kill()
            echo.wait(timeout=10)
            conn.default_channel.queue_delete(queue.name)
    return {
        "messages": n,
        "offered_rate": rate,
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "mean": statistics.fmean(times),
    }


def echo(url: str, queue_name: str) -> None:
    """Answer every message of queue_name with a persistent reply (confirmed) to its reply_to, then ack it."""
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel(), serializer="json")

        def on_message(body, message) -> None:
            producer.publish({"status": "SUCCESS"}, routing_key=message.properties["reply_to"], delivery_mode=2)
            message.ack()

        with conn.Consumer(_queue(queue_name), callbacks=[on_message], accept=["json"], prefetch_count=1):
            print("ready", flush=True)
            while True:
                conn.drain_events()


def consume(url: str, queue_name: str, n: int, prefetch: int) -> dict[str, float]:
    """Consume and ack n messages from queue_name; the wall-clock time of the last ack."""
    count = 0
    with Connection(url) as conn:

        def on_message(body, message) -> None:
            nonlocal count
            message.ack()
            count += 1

        with conn.Consumer(_queue(queue_name), callbacks=[on_message], accept=["json"], prefetch_count=prefetch):
            print("ready", flush=True)
            while count < n:
                conn.drain_events(timeout=60)
    return {"messages": count, "last_ack": time.time()}


if __name__ == "__main__":
    try:
        if len(sys.argv) == 6 and sys.argv[1] == "consume":
            print(json.dumps(consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))), flush=True)
        elif len(sys.argv) == 4 and sys.argv[1] == "echo":
            echo(sys.argv[2], sys.argv[3])
        else:
            sys.exit("usage: python -m bench.ceiling consume URL QUEUE N PREFETCH | echo URL QUEUE")
    except KeyboardInterrupt:
        sys.exit(130)
