"""The start-up consumer check (dts.amqp.checks.require_consumers, which dispatch and the load test run)
says "no consumer" (exit 4) only for a broker that is still there. A broker on its way down stops taking
connections, then drops its workers' connections (their consumers go), then closes the rest: a check that
reads "no consumer" in that window is exit 3, the broker gone, not 4.

The window is made exact with a real RabbitMQ behind a proxy that forwards one connection and then stops
listening, as the broker's listeners stop: the check's connection works, a new one is refused."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from helpers import BROKER_HOST, CHECKOUT, app_for, fresh_vhost, vhost_url, write_config

from dts.amqp.checks import require_consumers
from dts.amqp.deadline import Deadline, close_quietly, connect
from dts.errors import CliError, ExitCode

pytestmark = pytest.mark.integration
VHOST = f"dts-test-check-{CHECKOUT}"


class OneConnectionProxy:
    """Forwards the first TCP connection to the broker, then stops listening: a second one is refused."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        self.listener.close()  # the broker's listeners stop: new connections are refused from now on
        upstream = socket.create_connection((BROKER_HOST, 5672))
        self.sockets += [client, upstream]
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def no_workers(rabbitmq, tmp_path):
    """Settings for a vhost of its own where nobody consumes."""
    from dts.config import load_settings

    fresh_vhost(VHOST)
    return load_settings(write_config(tmp_path / "c.yml"))


def verdict(settings, url: str, own_connection: bool) -> int:
    """The check's exit code on `url` (own_connection: on a connection made first, as dispatch passes its
    reply queue's; else the check makes its own, as the load test does)."""
    app = app_for(settings.with_broker_url(url))
    deadline = Deadline.after(5)
    conn = connect(app, deadline) if own_connection else None
    try:
        require_consumers(app, settings, deadline, conn=conn)
    except CliError as exc:
        return exc.exit_code
    finally:
        close_quietly(conn, handshake=False)
        app.close()
    return ExitCode.OK


@pytest.mark.parametrize("own_connection", [False, True], ids=["load-test", "dispatch"])
def test_no_consumer_is_said_by_a_broker_still_there_and_a_broker_going_away_is_exit_3(no_workers, own_connection):
    assert verdict(no_workers, vhost_url(VHOST), own_connection) == ExitCode.NO_CONSUMER
    proxy = OneConnectionProxy()
    try:
        going = vhost_url(VHOST).replace(f"@{BROKER_HOST}:5672/", f"@127.0.0.1:{proxy.port}/")
        assert verdict(no_workers, going, own_connection) == ExitCode.BROKER_UNREACHABLE
    finally:
        proxy.close()
