"""Task events are fire-and-forget: the workers send them without publisher confirms.

    app = Celery("celery_app", events="dts.app.events:UnconfirmedEvents")   # what celery_app.py does
    without_confirms(connection)     # a kombu Connection whose channels, from now on, publish without confirms

`broker_transport_options.confirm_publish` (dts.app.conf) applies to every connection the app opens, so
without this each `task-received`/`task-started`/`task-succeeded` event a worker sends would wait for the
broker's confirm: a profile of a no-op load put 62 % of a worker's main process there (CHANGELOG.md). Events
are transient monitoring messages, lost by design when nobody listens; confirms protect nothing there.
Task messages and results keep their confirms (they carry the work).

The app uses `UnconfirmedEvents` as its `app.events` (celery_app.py); a dispatcher given its own
connection (the worker's Events bootstep opens one for it, already connected) turns confirms off on that
connection before its channel opens: py-amqp puts a channel in confirm mode when it opens, if the
connection says so. A dispatcher given a channel (a client's task-sent event, on the task producer's channel) is left
as it is: that channel belongs to the task publisher.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher


def without_confirms(connection) -> None:
    """Channels opened from now on by this kombu Connection publish without confirms, now and after a
    reconnect (a new dict: the one it holds may be the app's `broker_transport_options`)."""
    connection.transport_options = {**(connection.transport_options or {}), "confirm_publish": False}
    if connection.connected:
        connection.connection.confirm_publish = False


def paced(flush_soon: Callable[[], None], window: float, call_later, clock=time.monotonic) -> Callable[[], None]:
    """The worker's "events are buffered, flush them" callback, paced: the first event after a quiet
    `window` is flushed at once (the next loop turn, as Celery does); one that follows sooner waits for the
    window's end, with whatever else came meanwhile, in one message. So a burst of tasks sends about one
    event message per window instead of two or three per task, and a lone task's events are not held."""
    state = {"last": float("-inf"), "pending": False}

    def flush_now() -> None:
        state["pending"], state["last"] = False, clock()
        flush_soon()

    def on_buffered() -> None:
        if state["pending"]:
            return
        due = state["last"] + window
        if clock() >= due:
            flush_now()
        else:
            state["pending"] = True
            call_later(due - clock(), flush_now)

    return on_buffered


class UnconfirmedEventDispatcher(EventDispatcher):
    def __init__(self, connection=None, hostname=None, enabled=True, channel=None, *args, **kwargs):
        if connection is not None and channel is None:
            without_confirms(connection)
        on_buffered = kwargs.get("on_send_buffered")
        super().__init__(connection, hostname, enabled, channel, *args, **kwargs)
        window = self.app.conf.get("dts_event_window") or 0
        if on_buffered is not None and window > 0:  # the worker's dispatcher (its event loop buffers task events)
            from kombu.asynchronous import get_event_loop

            hub = get_event_loop()
            if hub is not None:
                self.on_send_buffered = paced(on_buffered, window, hub.call_later)


class UnconfirmedEvents(Events):
    dispatcher_cls = "dts.app.events:UnconfirmedEventDispatcher"
