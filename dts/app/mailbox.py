"""The remote-control mailbox: a worker's control queue named afresh on each connection.

Celery's worker takes its control commands (ping, inspect, shutdown) from an exclusive queue named after
its node (`worker-a@host.celery.pidbox`). A RabbitMQ 4.3 cluster keeps the exclusive queue of a node that
was killed, locked to the dead connection, until that node is back: a worker reconnecting to another node
could not declare its queue again (RESOURCE_LOCKED), and Celery stops on that error. With a name of its own
for each connection the worker declares a new queue instead; nothing else changes: the control exchange is
a fanout, so every command reaches every worker's queue whatever its name, and each worker keeps only the
commands addressed to its node name. The old queue goes with its connection (or, in that cluster, once its
node is back).

    app = Celery(..., control="dts.app.mailbox:Control")
"""

from __future__ import annotations

import uuid

from celery.app import control
from kombu import Queue
from kombu.pidbox import Mailbox as KombuMailbox


class Mailbox(KombuMailbox):
    def get_queue(self, hostname: str) -> Queue:
        queue = super().get_queue(hostname)
        queue.name = f"{queue.name}.{uuid.uuid4().hex[:12]}"  # e.g. worker-a@host.celery.pidbox.1f0c...
        return queue


class Control(control.Control):
    Mailbox = Mailbox
