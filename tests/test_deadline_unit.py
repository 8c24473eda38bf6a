"""Unit tests: dts.amqp.deadline bounds every read on a connection's socket, on a real socket that never answers."""

from __future__ import annotations

import socket
import time
import types

import pytest

from dts.amqp.deadline import BrokerSilent, Deadline, bounded, close_quietly


def silent_connection():
    """A connection-shaped object (py-amqp's transport.sock) whose peer accepts and never answers."""
    ours, peer = socket.socketpair()
    return types.SimpleNamespace(transport=types.SimpleNamespace(sock=ours)), peer


def test_a_read_with_no_answer_ends_at_the_deadline_as_broker_silent():
    conn, peer = silent_connection()
    started = time.monotonic()
    with pytest.raises(BrokerSilent, match=r"broker stopped answering \(no reply for 0\.[23] s\)"):
        with bounded(conn, Deadline.after(0.3)):
            conn.transport.sock.recv(1)  # what py-amqp does while it waits for a reply
    assert 0.25 <= time.monotonic() - started < 1.0
    assert conn.transport.sock.gettimeout() is None  # the socket's own timeout is given back
    peer.close()


def test_an_answer_before_the_deadline_passes_through():
    conn, peer = silent_connection()
    peer.sendall(b"x")
    with bounded(conn, Deadline.after(5)):
        assert conn.transport.sock.recv(1) == b"x"
    peer.close()


def test_a_connection_that_is_not_connected_is_left_to_its_connect_timeout():
    with bounded(types.SimpleNamespace(_connection=None, transport=None), Deadline.after(0.01)):
        pass  # no socket: nothing to bound, nothing raised


def test_deadline_arithmetic():
    d = Deadline.after(10)
    assert 9 < d.remaining() <= 10 and not d.expired()
    assert d.sooner(1).at < d.at and d.sooner(100).at == d.at
    assert Deadline(time.monotonic() - 1).expired() and Deadline(time.monotonic() - 1).remaining() == 0


def test_close_quietly_never_raises_and_drops_a_broken_connection():
    calls = []
    broken = types.SimpleNamespace(
        _connection=None, release=lambda: (_ for _ in ()).throw(OSError("reset")), collect=lambda: calls.append(1)
    )
    close_quietly(broken)  # the handshake fails: the socket is dropped instead
    close_quietly(broken, handshake=False)
    close_quietly(None)
    assert calls == [1, 1]
