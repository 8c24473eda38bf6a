"""Autoscaling on queue depth: every `autoscale.interval` seconds, look at each autoscaled pool's queues
(ready messages, consumers) and resize the pool through its engine, within `pools.<name>.autoscale`.

    decide(ready=57, replicas=1, last_change=0.0, now=1.0, policy=Policy(1, 3, 5, 2.0))   # -> 3 (at once)
    decide(ready=0, replicas=3, last_change=0.0, now=1.0, policy=Policy(1, 3, 5, 2.0))    # -> 3 (cooldown)
    run(engine, settings, app, duration=60, say=print)                                     # the loop

The decision is a pure function (tested with a table, tests/test_autoscale_unit.py):
- out of bounds (a pool below min or above max): to the nearest bound, at once;
- up: at once, to ceil(ready / target) replicas (at most max);
- down: only `cooldown` seconds after the pool's last change, and only to the size at which the ready
  messages would fill at most DOWN_FILL of the fewer replicas' target (at least min). The gap between the
  two thresholds is the hysteresis: after a scale-down the queue must grow by 1/DOWN_FILL before the pool
  grows again, so a queue that hovers around a threshold does not make the pool flap.
The engines stop surplus workers with a warm shutdown (SIGTERM, bounded by engine.stop_timeout): running
tasks finish, and with acks_late the messages a stopped worker had reserved go back to the queue.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError

from dts.amqp.checks import queue_stats
from dts.amqp.deadline import Deadline
from dts.config import Settings
from dts.engines.base import Engine, replicas

log = logging.getLogger("dts.autoscale")
DOWN_FILL = 0.5  # shrink only to a size the ready messages would fill to at most half its target


@dataclass(frozen=True)
class Policy:
    """One pool's autoscaling rule: pools.<name>.autoscale plus autoscale.cooldown."""

    min: int
    max: int
    target: int  # ready messages per replica
    cooldown: float  # seconds after the last change before a scale-down


@dataclass(frozen=True)
class Change:
    """A resize the autoscaler made, and why."""

    time: float  # time.time()
    pool: str
    before: int
    after: int
    ready: int
    consumers: int
    reason: str

    def line(self) -> str:
        """`HH:MM:SS pool: 1 -> 3 replicas (why; ready, consumers)`: one line per decision, however long (a
        record to grep, as a log line is)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.time))
        return (
            f"{stamp} {self.pool}: {self.before} -> {self.after} replicas ({self.reason}; "
            f"{self.ready} ready, {self.consumers} consumer(s))"
        )


# --------------------------------------------------------------------------- pure decision


def _bounded(n: int, policy: Policy) -> int:
    return max(policy.min, min(policy.max, n))


def decide(ready: int, replicas: int, last_change: float, now: float, policy: Policy) -> int:
    """The pool's new number of replicas (the same number: no change). See the module doc."""
    if replicas < policy.min or replicas > policy.max:
        return _bounded(replicas, policy)
    needed = _bounded(math.ceil(ready / policy.target), policy)
    if needed > replicas:
        return needed
    if now - last_change < policy.cooldown:
        return replicas
    calm = _bounded(math.ceil(ready / (policy.target * DOWN_FILL)), policy)
    return min(calm, replicas)


def reason(ready: int, before: int, after: int, policy: Policy) -> str:
    """Why `before` became `after`, in words (for the log line)."""
    if before < policy.min:
        return f"below autoscale.min {policy.min}"
    if before > policy.max:
        return f"above autoscale.max {policy.max}"
    if after > before:
        capped = " (autoscale.max)" if after == policy.max and math.ceil(ready / policy.target) > after else ""
        return f"up: {ready} ready > {before} x target {policy.target}{capped}"
    return (
        f"down: {ready} ready fit {after} x {DOWN_FILL:g} x target {policy.target}, "
        f"{policy.cooldown:g}s cooldown passed"
    )


def policies(settings: Settings) -> dict[str, Policy]:
    """The autoscaled pools (those with an `autoscale:` mapping) and their rules."""
    cooldown = settings.autoscale.cooldown
    return {
        name: Policy(p.autoscale.min, p.autoscale.max, p.autoscale.target, cooldown)
        for name, p in settings.pools.items()
        if p.autoscale is not None
    }


# --------------------------------------------------------------------------- the loop


def step(
    engine: Engine,
    settings: Settings,
    app,
    rules: dict[str, Policy],
    last_change: dict[str, float],
    now: float,
    say: Callable[[str], None] = log.info,
) -> list[Change]:
    """One look: read the queues and the engine, decide per pool, resize the pools that change (one
    engine call). `say` gets a line per change before the resize and one when it is done (a warm
    shutdown can take up to engine.stop_timeout). Updates `last_change`. Returns the changes made."""
    queues = [q for pool in rules for q in settings.pools[pool].queues]
    stats = queue_stats(app, queues, Deadline.after(settings.broker.connect_timeout))
    current = replicas(engine)
    changes = []
    for pool, rule in rules.items():
        queues = settings.pools[pool].queues
        ready, consumers = sum(stats[q].ready for q in queues), sum(stats[q].consumers for q in queues)
        have = current.get(pool, 0)
        want = decide(ready, have, last_change[pool], now, rule)
        log.debug("%s: %d ready, %d consumer(s), %d replica(s) -> %d", pool, ready, consumers, have, want)
        if want != have:
            changes.append(Change(time.time(), pool, have, want, ready, consumers, reason(ready, have, want, rule)))
    if changes:
        for change in changes:
            say(change.line())
        began = time.monotonic()
        engine.resize({c.pool: c.after for c in changes})
        done = time.monotonic()  # a resize can take a while (warm shutdown): the cooldown starts after it
        last_change.update({c.pool: done for c in changes})
        sizes = ", ".join(f"{c.pool} {c.after}" for c in changes)
        say(f"{time.strftime('%H:%M:%S')} resized in {done - began:.1f}s: {sizes}")
    return changes


def run(
    engine: Engine,
    settings: Settings,
    app,
    interval: float | None = None,
    duration: float | None = None,
    once: bool = False,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = log.info,
) -> list[Change]:
    """Look every `interval` seconds (default autoscale.interval) until `duration` seconds passed, `stop` is
    set, or after one look (`once`); `say` gets the lines of each resize (see `step`). A look the broker
    does not answer is logged and skipped (sizes stay). The cooldown of every pool starts when the loop
    starts: it does not shrink a pool just started."""
    rules = policies(settings)
    interval = settings.autoscale.interval if interval is None else interval
    stop = stop or threading.Event()
    started = time.monotonic()
    last_change = dict.fromkeys(rules, started)
    end = started + duration if duration is not None else math.inf
    made: list[Change] = []
    while True:
        began = time.monotonic()
        try:
            made += step(engine, settings, app, rules, last_change, began, say)
        except (AMQPConnectionError, OperationalError, OSError) as exc:
            log.warning("broker did not answer (%s: %s); sizes stay as they are", type(exc).__name__, str(exc)[:200])
        remaining = end - time.monotonic()
        if once or remaining <= 0:
            return made
        pause = max(0.0, min(interval - (time.monotonic() - began), remaining))
        if stop.wait(pause) or time.monotonic() >= end:  # the loop's pace (and an early stop), not a synchronisation
            return made
