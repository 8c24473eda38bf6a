"""One dispatch round: send every task of the plan at once, then collect every result under one deadline.

with ReplyQueue(app) as replies:
    publisher = TaskPublisher(app, settings, replies, sent_events=settings.monitoring.task_events)
    plan = [("task_a", {}), ("flash", {"board": "rev-b"})]      # (a declared task, its kwargs), any number
    outcomes, total, got = dispatch_round(settings, publisher, 60, plan, replies=replies, watch=watch)
summarise_dispatch(outcomes, total)            # dts.reports.dispatch_report: the round's summary
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import states
from kombu.utils.uuid import uuid

from dts.amqp.deadline import BLOCKED, BrokerSilent, Deadline, bounded
from dts.amqp.publish import TaskPublisher
from dts.amqp.replies import Collected, ReplyQueue, error_text, failure_output
from dts.config import Settings
from dts.reports.dispatch_report import TaskOutcome, success
from dts.runs.live import TaskWatch

log = logging.getLogger("dts.dispatch")
EVENT_GRACE = 0.5  # seconds the live view waits for task events that trail their results


Plan = list[tuple[str, dict[str, Any]]]  # the tasks a round sends: (a declared task's name, its kwargs)


def send_order(settings: Settings, plan: Plan) -> Plan:
    """Longest expected task first (a built-in's duration; a task of your own: unknown, 0), so that the
    task that bounds the total starts first; otherwise in the plan's order."""
    return sorted(plan, key=lambda item: -item[1].get("duration", settings.tasks[item[0]].duration))


def outcome(settings: Settings, name: str, task_id: str, got: Collected, timeout: float) -> TaskOutcome:
    """A task's outcome from what the wait collected: its result, its failure, or unknown (and why)."""
    pool = settings.pool_for_task(name).name
    meta = got.results.get(task_id)
    if meta is None:
        if got.broker_lost:
            why = f"the broker connection was lost ({got.broker_lost})"
        else:
            why = f"pool {pool} has no consumer" if pool in got.pools_lost else "still queued or running"
        return TaskOutcome(name, task_id, pool, error=f"no result within {timeout:g}s: {why}", unknown=True)
    if meta.get("status") == states.SUCCESS:
        return success(name, task_id, pool, meta["result"])
    return TaskOutcome(name, task_id, pool, error=error_text(meta, name), output=failure_output(meta))


def dispatch_round(
    settings: Settings,
    publisher: TaskPublisher,
    timeout: float,
    plan: Plan,
    replies: ReplyQueue,
    watch: TaskWatch | None = None,
) -> tuple[list[TaskOutcome], float, Collected]:
    """Send every task (results to the run's reply queue), then collect every result under one deadline.
    The publishes do not wait for their confirms: those arrive while the results are collected.
    Returns the outcomes, the total time and what the wait saw (a lost broker, a pool without consumers).
    With a watch, each task is announced to it before it is sent (its events may arrive before
    publish returns) and, once the results are in, the watch is given the final state of any task
    whose events did not arrive (task events switched off, or lost). Every task is expected by the reply
    queue before anything is sent: a synchronous step of a later publish (a channel's first declare) reads
    the connection, and a result read then for an id not yet expected would be dropped."""
    t0, deadline = time.perf_counter(), Deadline.after(timeout)
    sends = [(name, uuid(), kwargs) for name, kwargs in send_order(settings, plan)]
    for name, task_id, _ in sends:
        replies.expect(task_id)  # before it is sent: its result may arrive while the next one is published
        if watch:
            watch.expect(task_id, name, settings.retry_for(name).max_retries)
    unsent = send_all(settings, publisher, replies, sends, deadline, watch)
    sent = [(name, task_id) for name, task_id, _ in sends if task_id not in unsent]
    pools = {settings.tasks[name].queue: settings.pool_for_task(name).name for name, _ in sent}
    sent_ids = {task_id for _, task_id in sent}
    got = replies.collect(sent_ids, deadline.at, watch=pools) if sent_ids else Collected()
    if unsent and not got.broker_lost:
        got.broker_lost = BLOCKED if replies.blocked else "publishing failed"
    if publisher.confirms.refused:
        log.warning("the broker refused %d publish(es) (nack)", publisher.confirms.refused)
    total = time.perf_counter() - t0
    in_plan_order = {task_id: n for n, (_, task_id, _) in enumerate(sends)}
    outcomes = [
        TaskOutcome(
            name, task_id, settings.pool_for_task(name).name, error=unsent[task_id][0], unknown=unsent[task_id][1]
        )
        if task_id in unsent
        else outcome(settings, name, task_id, got, timeout)
        for name, task_id, _ in sorted(sends, key=lambda s: (s[0], in_plan_order[s[1]]))
    ]
    if watch:
        settle(settings, watch, outcomes, grace=0.0 if got.broker_lost else min(EVENT_GRACE, deadline.remaining()))
    return outcomes, total, got


def send_all(
    settings: Settings,
    publisher: TaskPublisher,
    replies: ReplyQueue,
    sends: list[tuple[str, str, dict[str, Any]]],
    deadline: Deadline,
    watch: TaskWatch | None,
) -> dict[str, tuple[str, bool]]:
    """Publish each task (name, id, kwargs) by the deadline. Returns the tasks not sent (by id), with why
    and whether they may have reached the broker (written out, never confirmed: unknown, not failed)."""
    unsent: dict[str, tuple[str, bool]] = {}
    for name, task_id, kwargs in sends:
        try:
            with bounded(replies.conn, deadline):  # a broker that holds the publish cannot hold the run
                publisher.publish(name, task_id, kwargs)
        except replies.errors as exc:  # the broker is away, silent, or blocking publishers
            uncertain = replies.blocked or isinstance(exc, BrokerSilent)
            lost = f"the broker connection was lost ({type(exc).__name__}: {str(exc)[:200]})"
            why = f"{'not confirmed' if uncertain else 'not sent'}: {BLOCKED if replies.blocked else lost}"
            unsent[task_id] = (why, uncertain)
            log.warning("%s %s", name, why)
            continue
        log.info("sent %s id=%s queue=%s", name, task_id, settings.tasks[name].queue)
        if watch and not settings.monitoring.task_events:
            watch.feed({"type": "task-sent", "uuid": task_id, "retries": 0, "queue": settings.tasks[name].queue})
    return unsent


def settle(settings: Settings, watch: TaskWatch, outcomes: list[TaskOutcome], grace: float) -> None:
    """Give task events a moment to catch up with the results (a worker stores the result before it sends
    task-succeeded), then let the results speak for any task still without a final line. The caller keeps
    `grace` within the run's deadline: the user's --timeout bounds the whole round."""
    if settings.monitoring.task_events and grace:
        watch.wait_until_finished(grace)
    late = set(watch.unfinished())
    for o in outcomes:
        if o.task_id in late:
            for event in final_events(settings, o):
                watch.feed(event)
            watch.flush(o.task_id)


def final_events(settings: Settings, o: TaskOutcome) -> list[dict[str, Any]]:
    """What the result says about a task, as the task events that would have said it."""
    sent = {"type": "task-sent", "uuid": o.task_id, "retries": 0, "queue": settings.tasks[o.task].queue}
    if o.result:
        r = o.result
        final = {
            "type": "task-succeeded",
            "uuid": o.task_id,
            "hostname": r.get("worker", ""),
            "runtime": r.get("execution_time"),
        }
    elif o.unknown:
        final = {"type": "task-unknown", "uuid": o.task_id, "exception": o.error}
    else:
        final = {"type": "task-failed", "uuid": o.task_id, "exception": o.error}
    return [sent, final]
