"""Task events go out without publisher confirms; tasks and results keep theirs (dts.app.events).
Against the real broker: the worker's Events bootstep hands the dispatcher a connection it has already
connected (Consumer.connection_for_write)."""

import pytest


def confirms(channel) -> bool:
    """py-amqp makes a channel of a confirm_publish connection publish with basic_publish_confirm."""
    return channel.basic_publish.__name__ == "basic_publish_confirm"


@pytest.fixture
def connected(app):
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        yield conn


def test_a_worker_event_channel_is_not_in_confirm_mode(app, connected):
    dispatcher = app.events.Dispatcher(connected, hostname="test@host", enabled=True)
    try:
        assert not confirms(dispatcher.producer.channel)
        assert dispatcher.connection.transport_options["confirm_publish"] is False  # after a reconnect too
    finally:
        dispatcher.disable()


def test_tasks_and_results_keep_their_confirms(app, connected):
    app.events.Dispatcher(connected, hostname="test@host", enabled=False)
    assert app.conf.broker_transport_options["confirm_publish"] is True
    with app.connection_for_write() as conn, app.producer_or_acquire() as producer:
        assert conn.transport_options["confirm_publish"] is True
        assert confirms(producer.channel)


class FakeClock:
    """A hand-driven clock and its timer: the pacing logic, not a sleep."""

    def __init__(self):
        self.now, self.timers = 100.0, []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay, fn):
        self.timers.append((self.now + delay, fn))

    def advance(self, seconds):
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn in due:
            fn()


def test_paced_flushes_a_lone_event_at_once_and_gathers_a_burst():
    from dts.app.events import paced

    clock, flushes = FakeClock(), []
    on_buffered = paced(lambda: flushes.append(clock.now), 0.01, clock.call_later, clock)
    on_buffered()  # the first event after a quiet window: at once
    assert flushes == [100.0]
    for _ in range(5):  # a burst within the window: one flush at its end, for all of them
        clock.advance(0.001)
        on_buffered()
    assert flushes == [100.0] and len(clock.timers) == 1
    clock.advance(0.01)
    assert flushes == [100.0, pytest.approx(100.015)]
    clock.advance(1.0)  # quiet again: the next event goes at once
    on_buffered()
    assert flushes[-1] == pytest.approx(101.015) and len(flushes) == 3
