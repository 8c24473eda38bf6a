"""The ceiling of `make bench`: raw kombu on the same broker, messages the size of a real task message.

    size, msg = task_message(app)                       # headers + body of a real task_a message
    publish_rate(url, msg, n, confirms=True)            # {"messages", "seconds", "rate"}
    publish_consume_rate(url, msg, n, prefetch=100)     # one consumer process, ack each: {"rate", ...}

The consumer runs in a process of its own (`python -m bench.ceiling consume URL QUEUE N PREFETCH`), as
a worker would: it prints `ready` once it consumes, then one JSON line when it has acked N messages.
"""

from __future__ import annotations

import json
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
    msg = app.amqp.as_task_v2(uuid(), name, args=(), kwargs=kwargs if kwargs is not None else {"duration": 0},
                              reply_to=f"dts.replies.{uuid()}")  # fmt: skip
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
        producer.publish(msg["body"], routing_key=queue.routing_key, headers=msg["headers"], delivery_mode=2,
                         **msg["properties"])  # fmt: skip
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


def publish_consume_rate(url: str, msg: dict[str, Any], n: int, prefetch: int = 100, confirms: bool = True,
                         timeout: float = 300.0) -> dict[str, float]:  # fmt: skip
    """n messages published (confirms) while one consumer process (prefetch, ack each) drains them: from
    the first publish to the last ack."""
    queue = _queue(f"bench.consume.{uuid()}")
    with Connection(url, transport_options={"confirm_publish": confirms}) as conn:
        queue(conn.default_channel).declare()
        consumer = subprocess.Popen([sys.executable, "-m", "bench.ceiling", "consume", url, queue.name, str(n),
                                     str(prefetch)], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)  # fmt: skip
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
    return {"messages": n, "seconds": seconds, "rate": n / seconds, "publish_seconds": publish_seconds,
            "prefetch": prefetch, "confirms": confirms}  # fmt: skip


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
    if len(sys.argv) != 6 or sys.argv[1] != "consume":
        sys.exit("usage: python -m bench.ceiling consume URL QUEUE N PREFETCH")
    try:
        print(json.dumps(consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))), flush=True)
    except KeyboardInterrupt:
        sys.exit(130)
