"""Questions to the workers (Celery's remote control: ping, stats, active, ...) on a deadline.

    with session(app, deadline) as conn:                                  # dts.amqp.deadline
        pongs = ask_workers(app, conn, "ping", deadline, destination=["worker-a@host"])
        # {"worker-a@host": {"ok": "pong"}}: who answered by the deadline

Celery's own `app.control.inspect()` publishes through the app's producer pool, whose connections have no
bound and whose publish reconnects without end on a broker that does not answer; here the question goes
out on the session's connection, every reply is read under its bound, and the wait ends at the deadline.
"""

from __future__ import annotations

from typing import Any

from dts.amqp.deadline import Deadline


class _Enough(Exception):
    """The deadline passed while replies were still coming in."""


def ask_workers(
    app,
    conn,
    command: str,
    deadline: Deadline,
    destination: list[str] | None = None,
    limit: int | None = None,
    wait: float = 1.0,
    **arguments: Any,
) -> dict[str, Any]:
    """Send `command` to the workers (only `destination`, if given) over `conn` and return their replies
    as {node name: reply}. The wait ends when `limit` replies are in (default: one per destination), when
    none came for `wait` seconds, or at `deadline`."""
    answers: dict[str, Any] = {}

    def on_reply(body: dict[str, Any]) -> None:
        answers.update(body)
        if deadline.expired():
            raise _Enough

    mailbox = app.control.mailbox(conn)  # a copy bound to `conn`
    mailbox._producer_pool = None  # publish on `conn` itself, not on a pooled connection without a bound
    try:
        mailbox._broadcast(
            command,
            arguments,
            destination,
            reply=True,
            timeout=max(0.001, min(wait, deadline.remaining())),
            limit=limit,
            callback=on_reply,
        )
    except _Enough:
        pass
    return answers


def revoke(app, conn, task_ids: list[str]) -> None:
    """Revoke tasks with terminate (SIGTERM to the pool process running one), broadcast on the session's
    connection: every worker drops them if queued, stops them if running. No reply is waited for."""
    app.control.revoke(list(task_ids), terminate=True, signal="SIGTERM", connection=conn)
