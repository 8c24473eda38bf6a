"""The Celery settings of the app: queue declarations (the one place), routes, reliability defaults.

Every work queue Q is declared with its dead-letter pair: a direct exchange `Q.dlx` and a durable queue
`Q.dead` bound to it (routing key Q). Q carries `x-dead-letter-exchange: Q.dlx` and
`x-dead-letter-routing-key: Q`, so a message a worker rejects goes to `Q.dead` (docs/operations/dead-letters.md).

`broker.queue_type: quorum` declares Q and Q.dead as quorum queues (`x-queue-type: quorum`: replicated
over a cluster's nodes) and gives Q an `x-delivery-limit` (broker.delivery_limit): a message redelivered
more often than that (a task that kills its worker every time) is dead-lettered to Q.dead by RabbitMQ.
Celery sees the argument and turns global QoS off (RabbitMQ refuses it on quorum queues). The per-run
reply queues (dts.amqp.replies) stay classic. docs/deploy/multi-host.md says why.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from dts.config import BrokerSettings, Settings, broker_urls

DLX_SUFFIX = ".dlx"
DEAD_SUFFIX = ".dead"
CLASSIC = BrokerSettings()  # classic queues: the default declaration


def dead_letter_exchange(queue: str) -> str:
    return queue + DLX_SUFFIX


def dead_letter_queue_name(queue: str) -> str:
    return queue + DEAD_SUFFIX


def type_arguments(queue_type: str) -> dict[str, str]:
    """`x-queue-type: quorum` for a quorum queue; nothing for a classic one (RabbitMQ's default, and what
    queues declared before the option exist with: an explicit `classic` would not match them)."""
    return {"x-queue-type": "quorum"} if queue_type == "quorum" else {}


def queue_type_of(queue: Queue) -> str:
    return (queue.queue_arguments or {}).get("x-queue-type", "classic")


def dead_letter_arguments(queue: str, broker: BrokerSettings = CLASSIC) -> dict[str, str | int]:
    """The arguments a work queue is declared with (RabbitMQ refuses to re-declare it with others)."""
    args: dict[str, str | int] = {
        "x-dead-letter-exchange": dead_letter_exchange(queue),
        "x-dead-letter-routing-key": queue,
        **type_arguments(broker.queues_type),
    }
    if broker.queues_type == "quorum":
        args["x-delivery-limit"] = broker.delivery_limit
    return args


def dead_letter_queue(queue: str, queue_type: str = "classic") -> Queue:
    """`queue.dead`, bound to the direct exchange `queue.dlx` with the routing key `queue`; of the work
    queue's type (quorum: replicated like it)."""
    exchange = Exchange(dead_letter_exchange(queue), type="direct", durable=True)
    return Queue(
        dead_letter_queue_name(queue),
        exchange,
        routing_key=queue,
        durable=True,
        queue_arguments=type_arguments(queue_type) or None,
    )


class DeadLetteredQueue(Queue):
    """A work queue whose declaration also declares its dead-letter exchange and queue, first: RabbitMQ
    drops (does not dead-letter) a rejected message whose dead-letter exchange does not exist. Whoever
    declares the queue (client, worker, CLI) declares the pair, with identical arguments."""

    def declare(self, nowait: bool = False, channel=None) -> str:
        if not self.no_declare:
            self.dead_letter_queue().bind(channel or self.channel).declare(nowait=nowait)
        return super().declare(nowait=nowait, channel=channel)

    def dead_letter_queue(self) -> Queue:
        return dead_letter_queue(self.name, queue_type_of(self))


def work_queue(name: str, broker: BrokerSettings = CLASSIC) -> DeadLetteredQueue:
    return DeadLetteredQueue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=dead_letter_arguments(name, broker),
        consumer_arguments=consumer_arguments(broker),
    )


def consumer_arguments(broker: BrokerSettings) -> dict[str, int] | None:
    """The workers' basic.consume arguments: on quorum queues, broker.consumer_timeout as the consumer's own
    timeout (`x-consumer-timeout`, ms). RabbitMQ 4.3 applies it to quorum queues over its global setting;
    4.0 and 3.10 accept it and keep their global one (the compose broker sets that); classic queues take no
    such argument on 4.3 (refused) and have no consumer timeout there."""
    if broker.queues_type != "quorum":
        return None
    return {"x-consumer-timeout": round(broker.consumer_timeout * 1000)}


def declared_queues(settings: Settings) -> tuple[Queue, ...]:
    """Every pool's queues, declared here and nowhere else: durable, one direct exchange per queue, each
    with its dead-letter arguments and its dead-letter exchange and queue."""
    return tuple(work_queue(name, settings.broker) for name in settings.queues)


def route_table(settings: Settings) -> dict[str, dict[str, str]]:
    return {f"celery_app.{t.name}": {"queue": t.queue, "routing_key": t.queue} for t in settings.tasks.values()}


def time_limit_annotations(settings: Settings) -> dict[str, dict[str, float]]:
    """Each task's soft/hard time limits (tasks.<name>.soft_time_limit / time_limit; 0 = none) as Celery task
    annotations: the worker enforces them (prefork only), and a client sends them with each message."""
    annotations = {}
    for t in settings.tasks.values():
        limits = {"soft_time_limit": t.soft_time_limit, "time_limit": t.time_limit}
        limits = {k: v for k, v in limits.items() if v}
        if limits:
            annotations[f"celery_app.{t.name}"] = limits
    return annotations


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """py-amqp's TLS options for an amqps:// URL, from `broker.tls` (None: plain AMQP, an amqp:// URL, e.g. the
    host's own plain listener while containers use TLS). The broker's certificate must be signed by
    ca_file and carry server_hostname (default: the first URL's host; with failover URLs of several hosts, a
    name every node's certificate carries): py-amqp checks the name only when
    server_hostname is given, so it always is."""
    tls = settings.broker.tls
    if tls is None or not settings.broker.url.startswith("amqps://"):  # the URL says whether, broker.tls how
        return None
    options = {
        "ca_certs": tls.ca_file,
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": tls.server_hostname or urlsplit(broker_urls(settings.broker.url)[0]).hostname or "localhost",
    }
    if tls.cert_file:
        options.update(certfile=tls.cert_file, keyfile=tls.key_file)
    return options


def celery_settings(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker.url,
        "broker_use_ssl": broker_ssl(settings) or False,  # every connection of the app: CLIs, workers, events
        "result_backend": "dts.app.rpc_backend:NackRetryingRPCBackend",  # rpc:// to each run's reply queue (dts.amqp.replies)
        "result_persistent": True,  # results as persistent messages: a broker restart keeps them
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": declared_queues(settings),
        "task_routes": route_table(settings),
        "task_default_queue": settings.queues[0],
        "task_create_missing_queues": False,
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": True,  # a failed task is acked once its copy is in Q.dead (dts.runtime.deadletter)
        "worker_consumer": "dts.runtime.deadletter:DeadLetterConsumer",  # undecodable bodies are dead-lettered, not dropped
        "task_reject_on_worker_lost": True,
        # A task killed at its hard time limit is acked, not requeued: it fails once instead of looping (False
        # would make Celery reject it with requeue=True, to be killed again and again). Celery's default today.
        "task_acks_on_timeout": True,
        "task_annotations": time_limit_annotations(settings),  # per-task soft/hard time limits
        "worker_prefetch_multiplier": 1,  # each worker's own comes from its pool (--prefetch-multiplier)
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker.connect_timeout,
        "broker_heartbeat": settings.broker.heartbeat,  # the workers' (Celery's clients send none of their own)
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": settings.monitoring.task_events,  # -E: received/started/retried/succeeded/...
        "task_send_sent_event": settings.monitoring.task_events,  # task-sent, from clients and from retries
        "dts_event_window": settings.monitoring.event_window,  # read by dts.app.events' dispatcher in the worker
        "enable_utc": True,
        "timezone": "UTC",
    }
