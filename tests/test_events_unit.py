"""Task events go out without publisher confirms; tasks and results keep theirs (dts.events).
Against the real broker: the worker's Events bootstep hands the dispatcher a connection it has already
connected (Consumer.connection_for_write)."""

import pytest

from celery_app import app


def confirms(channel) -> bool:
    """py-amqp makes a channel of a confirm_publish connection publish with basic_publish_confirm."""
    return channel.basic_publish.__name__ == "basic_publish_confirm"


@pytest.fixture
def connected():
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        yield conn


def test_a_worker_event_channel_is_not_in_confirm_mode(connected):
    dispatcher = app.events.Dispatcher(connected, hostname="test@host", enabled=True)
    try:
        assert not confirms(dispatcher.producer.channel)
        assert dispatcher.connection.transport_options["confirm_publish"] is False  # after a reconnect too
    finally:
        dispatcher.disable()


def test_tasks_and_results_keep_their_confirms(connected):
    app.events.Dispatcher(connected, hostname="test@host", enabled=False)
    assert app.conf.broker_transport_options["confirm_publish"] is True
    with app.connection_for_write() as conn, app.producer_or_acquire() as producer:
        assert conn.transport_options["confirm_publish"] is True
        assert confirms(producer.channel)
