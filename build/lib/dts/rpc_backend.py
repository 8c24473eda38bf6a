"""The result backend: Celery's rpc:// (results to each run's reply queue, dts.amqp.replies), but a result the
broker refuses with a negative confirm is published again, a bounded number of times.

A quorum queue whose leader is gone (a cluster node lost) nacks the publishes it cannot commit until its
new leader is elected, within seconds. Celery retries a result publish only on connection errors: a nack
ended the task as FAILED (OperationalError) although it had succeeded, and its redelivery then ran it a
second time (measured in tests/test_cluster.py). Here the same result is published again after a pause.
"""

from __future__ import annotations

import logging
import time

from amqp.exceptions import MessageNacked
from celery.backends.rpc import RPCBackend
from kombu.exceptions import OperationalError

log = logging.getLogger("dts.results")

NACK_RETRIES = 20  # publishes of one result the broker may nack before the task fails on it
NACK_PAUSE = 0.5  # seconds between them: 10 s in all, longer than a quorum queue's leader election


def nacked(exc: BaseException) -> bool:
    return isinstance(exc, MessageNacked) or isinstance(exc.__cause__, MessageNacked)


class NackRetryingRPCBackend(RPCBackend):
    """rpc://, with a nacked result publish retried (see the module doc)."""

    def store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        for attempt in range(1, NACK_RETRIES + 1):
            try:
                return super().store_result(task_id, result, state, traceback, request, **kwargs)
            except OperationalError as exc:
                if not nacked(exc) or attempt == NACK_RETRIES:
                    raise
                log.warning("the broker nacked the result of %s (attempt %d); publishing it again", task_id, attempt)
                time.sleep(NACK_PAUSE)  # bounded: NACK_RETRIES x NACK_PAUSE
        return None
