"""Every broker call on a deadline: the one helper that bounds them. py-amqp waits for a reply (a channel
open, a declare, a confirm, a close) with no timeout of its own, so a broker that accepts TCP but answers
nothing (paused, stuck on its disk, a path that drops packets) would hold the caller forever. Inside
`bounded`, every read and write on the connection's socket gives up at the deadline instead.

    deadline = Deadline.after(6.0)
    with session(app, deadline) as conn:                # connected by the deadline, or an error; closed quietly
        conn.default_channel.queue_declare(queue="queue_a", passive=True)   # BrokerSilent at the deadline
    with bounded(conn, deadline):                       # a long-lived connection (a reply queue's): one step
        channel.queue_declare(queue="queue_a", passive=True)
    close_quietly(conn)                                 # a close that cannot hang
    close_quietly(conn, handshake=False)                # a broken connection: its socket dropped at once

Every connection the project opens comes from `connect` or `session` (tests/test_bounded.py checks it):
connected in one attempt by the deadline, told at once when the broker blocks its publishes, and never
retried by kombu on a new connection of its own (Producer.publish(retry=True) would reconnect forever).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CLOSE_BOUND = 0.25  # seconds each step of a connection's close handshake may take before its socket is dropped


@dataclass(frozen=True)
class Deadline:
    """A point in time.monotonic()'s clock."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def sooner(self, seconds: float) -> Deadline:
        """This deadline, or `seconds` from now if that comes first."""
        return Deadline(min(self.at, time.monotonic() + seconds))


BLOCKED = "broker is blocking publishers (connection.blocked: a memory or disk alarm, see the broker's logs)"


class BrokerSilent(ConnectionError):
    """The broker accepted the connection but answered nothing until the deadline (a connection error:
    the caller drops this connection, as for a reset)."""


class BrokerBlocked(BrokerSilent):
    """The broker held a publish until the deadline because it blocks publishers (a resource alarm)."""


def _socket(conn: Any) -> socket.socket | None:
    """The socket under a kombu Connection or a py-amqp Connection, if it is connected (never connects)."""
    amqp_conn = getattr(conn, "_connection", None) or conn  # kombu's property would connect: read its field
    transport = getattr(amqp_conn, "transport", None)
    return getattr(transport, "sock", None)


@contextlib.contextmanager
def bounded(conn: Any, deadline: Deadline) -> Iterator[None]:
    """Each socket read and write on `conn` within the block waits at most the time left to `deadline` when
    the block starts (a loop of many calls brings it down with `tighten`): BrokerSilent then."""
    sock = _socket(conn)
    if sock is None:  # not connected: the connect itself is bounded by its connect_timeout
        yield
        return
    previous, started = sock.gettimeout(), time.monotonic()
    sock.settimeout(max(0.001, deadline.remaining()))
    try:
        yield
    except TimeoutError as exc:  # socket.timeout: no byte came before the deadline
        waited = time.monotonic() - started
        raise BrokerSilent(f"broker stopped answering (no reply for {waited:.1f} s)") from exc
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)


def tighten(conn: Any, deadline: Deadline) -> None:
    """Inside `bounded`, in a loop of many calls: the socket's bound brought down to what is left."""
    sock = _socket(conn)
    if sock is not None:
        sock.settimeout(max(0.001, deadline.remaining()))


def close_quietly(conn: Any, seconds: float = CLOSE_BOUND, handshake: bool = True) -> None:
    """Release `conn` (kombu) with its close handshake bounded; a broker that does not answer it gets the
    socket dropped instead, as does a connection known to be broken (handshake=False). Never raises."""
    if conn is None:
        return
    if not handshake:
        with contextlib.suppress(Exception):
            conn.collect()
        return
    try:
        with bounded(conn, Deadline.after(seconds)):
            conn.release()
    except Exception:  # noqa: BLE001 - the connection is being thrown away: any failure ends the same way
        with contextlib.suppress(Exception):
            conn.collect()


def _no_retry(obj: Any, fun: Any, *args: Any, **kwargs: Any) -> Any:
    """Connection.ensure that retries nothing: a failed call raises, and the caller's deadline decides."""
    return fun


def connect(app: Any, deadline: Deadline, heartbeat: float = 0, on_blocked: Any = None, **options: Any) -> Any:
    """A new kombu connection to `app`'s broker, connected in one attempt by `deadline` (else the
    connection error), with `heartbeat` seconds negotiated (0: none; the caller calls heartbeat_check).
    `on_blocked(reason or None)`: told when the broker starts (a reason) and stops (None) blocking its
    publishes. Release it with close_quietly."""
    seconds = max(0.05, deadline.remaining())
    transport_options = dict(options.pop("transport_options", {}))  # merged by Celery with the configured ones
    if on_blocked is not None:
        transport_options |= {"on_blocked": on_blocked, "on_unblocked": lambda: on_blocked(None)}
    conn = app.connection_for_write(
        connect_timeout=seconds, heartbeat=heartbeat, transport_options=transport_options, **options
    )
    conn.ensure = _no_retry  # kombu's publish(retry=True) and friends: one attempt on this connection
    # Quick attempts within the deadline (kombu's own pacing would sleep 2 s first): two on one URL; with
    # failover URLs (the nodes of a cluster) one per node in turn, each given its share of the deadline.
    nodes = max(1, len(conn.alt))
    if nodes > 1:
        conn.connect_timeout = max(0.05, seconds / nodes)
    try:
        conn.ensure_connection(max_retries=max(1, nodes - 1), interval_start=0, interval_step=0, timeout=seconds)
    except BaseException:
        close_quietly(conn, handshake=False)
        raise
    return conn


@contextlib.contextmanager
def session(app: Any, deadline: Deadline, heartbeat: float = 0, **options: Any) -> Iterator[Any]:
    """A connection (see `connect`) for one short job: every call on it within the block bounded by
    `deadline` (BrokerSilent, or BrokerBlocked when the broker held a publish), released quietly after
    (its socket dropped if the block raised)."""
    blocked: list[str] = []

    def on_blocked(reason: str | None) -> None:
        blocked[:] = [reason] if reason else []

    conn = connect(app, deadline, heartbeat, on_blocked=on_blocked, **options)
    try:
        with bounded(conn, deadline):
            yield conn
    except BrokerSilent as exc:
        close_quietly(conn, handshake=False)
        if blocked:
            raise BrokerBlocked(f"{BLOCKED}: {blocked[0]}") from exc
        raise
    except BaseException:
        close_quietly(conn, handshake=False)
        raise
    close_quietly(conn)
