"""Broker checks shared by the CLIs: is RabbitMQ reachable, who consumes each queue, how deep is it.

from broker import check_broker, queue_stats
check_broker(app, timeout=5)            # raises CliError(exit 3) with a one-line fix
queue_stats(app, ["queue_a"])            # {"queue_a": QueueStats(ready=0, consumers=1)}
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from amqp.exceptions import AccessRefused, NotFound
from kombu.exceptions import OperationalError

from celery_app import CliError, ExitCode

START_HINT = "start RabbitMQ with `make broker` (or set BROKER_URL to a running broker)"


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # messages waiting to be delivered
    consumers: int  # consumers on the queue (a worker process pool counts once)
    exists: bool = True


def redact_url(url: str) -> str:
    """amqp://user:secret@host:5672/vh -> amqp://user:***@host:5672/vh"""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_broker(app, timeout: float) -> None:
    """Open (and keep in the app's pool) a connection; CliError(exit 3) with a fix if that fails."""
    url = redact_url(app.conf.broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except AccessRefused:
        raise CliError(
            f"the broker at {url} refused the login: check the user, password and vhost "
            "(run `make broker` to create the project's vhost and user)",
            ExitCode.BROKER_UNREACHABLE,
        ) from None
    except (TimeoutError, OSError, OperationalError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(
            f"cannot reach the broker at {url} ({reason}): {START_HINT}", ExitCode.BROKER_UNREACHABLE
        ) from None


def queue_stats(app, queues: list[str]) -> dict[str, QueueStats]:
    """Passive-declare each queue: messages ready and consumer count. A missing queue has no consumer."""
    stats = {}
    with app.connection_for_write() as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
                stats[queue] = QueueStats(queue, ready, consumers)
            except NotFound:
                stats[queue] = QueueStats(queue, 0, 0, exists=False)
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - a channel closed by the broker (404) cannot close again
                    pass
    return stats


def require_consumers(app, queues: dict[str, str]) -> dict[str, QueueStats]:
    """queues: {queue: pool}. CliError(exit 4) naming the first queue nobody consumes."""
    stats = queue_stats(app, list(queues))
    for queue, pool in queues.items():
        if stats[queue].consumers == 0:
            raise CliError(
                f"{queue} has no consumer: no {pool} worker is running; start the workers with `make up` "
                f"(or `python scale.py {pool} 1`)",
                ExitCode.NO_CONSUMER,
            )
    return stats


def warm_up(app, publishers: int = 1) -> None:
    """Do the one-off set-up of the first publish and the first result wait ahead of time: open
    `publishers` producer connections, declare the task queues on them, build the task sender, start
    consuming from the rpc:// reply queue. Timing a dispatch then measures the dispatch, not set-up."""
    from contextlib import ExitStack

    from kombu.common import maybe_declare
    from kombu.utils.uuid import uuid

    app.amqp.send_task_message  # noqa: B018 - a cached property that imports and builds the sender
    with ExitStack() as stack:
        for _ in range(publishers):
            producer = stack.enter_context(app.producer_pool.acquire(block=True))
            for queue in app.amqp.queues.values():
                maybe_declare(queue, producer.channel, retry=True)
            app.backend.on_task_call(producer, None)
    app.backend.result_consumer.consume_from(uuid())


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run rabbitmqctl (needs to run on the broker's host as root or the rabbitmq user)."""
    exe = shutil.which("rabbitmqctl") or ("/usr/sbin/rabbitmqctl" if os.path.exists("/usr/sbin/rabbitmqctl") else None)
    if exe is None:
        raise CliError("rabbitmqctl not found: run this on the broker's host, or create the vhost/user by hand")
    proc = subprocess.run([exe, "-q", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise CliError(
            f"rabbitmqctl {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
        )
    return proc


def ensure_vhost(vhost: str, user: str, password: str | None = None) -> None:
    """Idempotently create `vhost` and give `user` all permissions on it (creating the user when a
    password is given, or resetting its password if it exists)."""
    existing = rabbitmqctl("list_vhosts", "name").stdout.split()
    if vhost not in existing:
        rabbitmqctl("add_vhost", vhost)
    if password is not None:
        users = [line.split()[0] for line in rabbitmqctl("list_users").stdout.splitlines() if line.strip()]
        if user in users:
            rabbitmqctl("change_password", user, password)
        else:
            rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
