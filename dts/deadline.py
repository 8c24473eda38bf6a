"""Every broker call on a deadline: the one helper that bounds them. py-amqp waits for a reply (a channel
open, a declare, a confirm, a close) with no timeout of its own, so a broker that accepts TCP but answers
nothing (paused, stuck on its disk, a path that drops packets) would hold the caller forever. Inside
`bounded`, every read and write on the connection's socket gives up at the deadline instead.

    deadline = Deadline.after(6.0)
    with bounded(conn, deadline):                       # raises BrokerSilent at the deadline
        channel.queue_declare(queue="queue_a", passive=True)
    close_quietly(conn)                                 # a close that cannot hang
    close_quietly(conn, handshake=False)                # a broken connection: its socket dropped at once
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


class BrokerSilent(ConnectionError):
    """The broker accepted the connection but answered nothing until the deadline (a connection error:
    the caller drops this connection, as for a reset)."""


def _socket(conn: Any) -> socket.socket | None:
    """The socket under a kombu Connection or a py-amqp Connection, if it is connected (never connects)."""
    amqp_conn = getattr(conn, "_connection", None) or conn  # kombu's property would connect: read its field
    transport = getattr(amqp_conn, "transport", None)
    return getattr(transport, "sock", None)


@contextlib.contextmanager
def bounded(conn: Any, deadline: Deadline) -> Iterator[None]:
    """Every socket read and write on `conn` within the block ends by `deadline`: BrokerSilent then."""
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
