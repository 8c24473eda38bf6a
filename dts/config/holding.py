"""How long a worker may hold a message unacknowledged, against `broker.consumer_timeout` (pure).

With late acks a message stays unacknowledged while its task runs; a retry's new message while the worker
holds it waiting out its countdown (up to the task's `retry.backoff_max`); a prefetched message while the
slot's earlier tasks run (`prefetch_multiplier` of them). RabbitMQ takes back a message held longer than
its consumer timeout and delivers it again: the task runs twice. Only declared bounds can be checked: a
task with no `time_limit` runs as long as it runs (the timeout is then its only bound).

    for line in consumer_timeout_warnings(settings): print(line, file=sys.stderr)   # `dts up`, `dts health`
"""

from __future__ import annotations

from dataclasses import dataclass

from dts.config.schema import Settings


@dataclass(frozen=True)
class Hold:
    """The longest a queue's message can be held by the declared limits: backoff + prefetch × time limit."""

    queue: str
    time_limit: float  # the longest hard time_limit of the queue's tasks; 0: a task there has none
    prefetch: int  # the pool's prefetch_multiplier
    backoff: float  # the longest backoff_max of the queue's retried tasks; 0: none retried

    @property
    def seconds(self) -> float:
        return self.backoff + self.prefetch * self.time_limit

    def parts(self) -> str:
        run = f"time_limit {self.time_limit:g}s × prefetch {self.prefetch}" if self.time_limit else ""
        wait = f"backoff_max {self.backoff:g}s" if self.backoff else ""
        return " + ".join(p for p in (run, wait) if p)


def holds(settings: Settings) -> list[Hold]:
    """Each queue's declared hold (a queue with any task lacking a time limit counts only its backoff)."""
    found = []
    for queue in settings.queues:
        tasks = [t for t in settings.tasks.values() if t.queue == queue]
        limits = [t.time_limit for t in tasks]
        backoffs = [settings.retry_for(t.name).backoff_max for t in tasks if settings.retry_for(t.name).max_retries]
        found.append(
            Hold(
                queue=queue,
                time_limit=max(limits) if limits and all(limits) else 0.0,
                prefetch=settings.pool_for_queue(queue).prefetch_multiplier,
                backoff=max(backoffs, default=0.0),
            )
        )
    return found


def consumer_timeout_warnings(settings: Settings) -> list[str]:
    """One line per queue whose declared hold exceeds broker.consumer_timeout, naming the fix."""
    timeout = settings.broker.consumer_timeout
    return [
        f"warning: {h.queue}'s messages can stay unacknowledged {h.seconds:g}s ({h.parts()}), longer than "
        f"broker.consumer_timeout ({timeout:g}s): RabbitMQ would take one back and its task would run again; "
        f"raise broker.consumer_timeout to {h.seconds:g} or more (and a broker you run yourself: its "
        "consumer_timeout) or lower those limits"
        for h in holds(settings)
        if h.seconds > timeout
    ]
