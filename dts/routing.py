"""The Celery settings of the app: queue declarations (the one place), routes, reliability defaults.

Every work queue Q is declared with its dead-letter pair: a direct exchange `Q.dlx` and a durable queue
`Q.dead` bound to it (routing key Q). Q carries `x-dead-letter-exchange: Q.dlx` and
`x-dead-letter-routing-key: Q`, so a message a worker rejects goes to `Q.dead` (README, "Dead letters").
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from dts.config import Settings

DLX_SUFFIX = ".dlx"
DEAD_SUFFIX = ".dead"


def dead_letter_exchange(queue: str) -> str:
    return queue + DLX_SUFFIX


def dead_letter_queue_name(queue: str) -> str:
    return queue + DEAD_SUFFIX


def dead_letter_arguments(queue: str) -> dict[str, str]:
    """The arguments a work queue is declared with (RabbitMQ refuses to re-declare it with others)."""
    return {"x-dead-letter-exchange": dead_letter_exchange(queue), "x-dead-letter-routing-key": queue}


def dead_letter_queue(queue: str) -> Queue:
    """`queue.dead`, bound to the direct exchange `queue.dlx` with the routing key `queue`."""
    exchange = Exchange(dead_letter_exchange(queue), type="direct", durable=True)
    return Queue(dead_letter_queue_name(queue), exchange, routing_key=queue, durable=True)


class DeadLetteredQueue(Queue):
    """A work queue whose declaration also declares its dead-letter exchange and queue, first: RabbitMQ
    drops (does not dead-letter) a rejected message whose dead-letter exchange does not exist. Whoever
    declares the queue (client, worker, CLI) declares the pair, with identical arguments."""

    def declare(self, nowait: bool = False, channel=None) -> str:
        if not self.no_declare:
            dead_letter_queue(self.name).bind(channel or self.channel).declare(nowait=nowait)
        return super().declare(nowait=nowait, channel=channel)


def work_queue(name: str) -> DeadLetteredQueue:
    return DeadLetteredQueue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True,
                             queue_arguments=dead_letter_arguments(name))  # fmt: skip


def declared_queues(settings: Settings) -> tuple[Queue, ...]:
    """Every pool's queues, declared here and nowhere else: durable, one direct exchange per queue, each
    with its dead-letter arguments and its dead-letter exchange and queue."""
    return tuple(work_queue(name) for name in settings.queues)


def route_table(settings: Settings) -> dict[str, dict[str, str]]:
    return {f"celery_app.{t.name}": {"queue": t.queue, "routing_key": t.queue} for t in settings.tasks.values()}


def celery_settings(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker.url,
        "result_backend": "rpc://",
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": declared_queues(settings),
        "task_routes": route_table(settings),
        "task_default_queue": settings.queues[0],
        "task_create_missing_queues": False,
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": True,  # a failed task is acked once its copy is in Q.dead (dts.deadletter)
        "worker_consumer": "dts.deadletter:DeadLetterConsumer",  # undecodable bodies are dead-lettered, not dropped
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # each worker's own comes from its pool (--prefetch-multiplier)
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker.connect_timeout,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": settings.monitoring.task_events,  # -E: received/started/retried/succeeded/...
        "task_send_sent_event": settings.monitoring.task_events,  # task-sent, from clients and from retries
        "enable_utc": True,
        "timezone": "UTC",
    }
