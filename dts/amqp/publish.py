"""Publishing tasks on the run's connection: a channel in confirm mode, confirms settled as they arrive.

    publisher = TaskPublisher(app, settings, replies)            # replies: the run's dts.amqp.replies.ReplyQueue
    publisher.publish("task_a", task_id, {"duration": 0})       # returns at once; no round trip
    replies.collect(ids, deadline)                               # results and confirms arrive meanwhile
    publisher.unconfirmed(), publisher.confirms.refused          # what the broker has not taken (yet)

The message is the one `apply_async` builds (`app.amqp.as_task_v2`: protocol 2, JSON, persistent, the
task's time limits, `reply_to` the run's reply queue), minus apply_async's per-task costs, measured with
cProfile on dispatch.py's path (CHANGELOG.md): a reply-queue declare per call (the rpc:// backend's
`on_task_call`), a wait for each confirm, and a confirmed publish of the task-sent event. Here the
task-sent event (with `monitoring.task_events`) goes out on a channel without confirms: it is monitoring.
Both channels live on the ReplyQueue's connection; after a reconnect they are opened again.
"""

from __future__ import annotations

from typing import Any

import amqp
from celery.utils.nodenames import anon_nodename
from kombu.serialization import dumps

from dts.config import Settings


class Confirms:
    """Publisher confirms as they arrive: delivery tags 1, 2, ... settled one by one or `multiple` (every
    tag up to the given one); a nack settles too, and counts as refused."""

    def __init__(self):
        self.upto, self.above, self.refused = 0, set(), 0

    def settled(self) -> int:
        return self.upto + len(self.above)

    def settle(self, delivery_tag: int, multiple: bool) -> int:
        """Returns how many publishes this settles that were not settled before."""
        before = self.settled()
        if multiple:
            self.upto = max(self.upto, delivery_tag)
            self.above = {tag for tag in self.above if tag > self.upto}
        elif delivery_tag > self.upto:
            self.above.add(delivery_tag)
        return self.settled() - before


class TaskPublisher:
    """Publishes Celery task messages on a channel of the ReplyQueue's connection in confirm mode, without
    waiting for each confirm: RabbitMQ's acks arrive while the connection is pumped (ReplyQueue.pump,
    collect). `published`, `confirms` and `unconfirmed()` count the current channel's publishes."""

    def __init__(self, app, settings: Settings, replies, sent_events: bool = False):
        self.app, self.replies, self.sent_events = app, replies, sent_events
        self.routes = {
            name: (t.queue, t.time_limit or None, t.soft_time_limit or None) for name, t in settings.tasks.items()
        }
        self.origin = anon_nodename()
        self._conn = self.channel = self.events = None
        self.published, self.confirms = 0, Confirms()

    def _open(self) -> None:
        """Channels on the reply queue's current connection (again after a reconnect)."""
        conn = self.replies.conn
        if conn is self._conn:
            return
        if conn is None:  # lost, and not back yet (ReplyQueue.collect reconnects)
            raise ConnectionError("no connection to the broker")
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.published, self.confirms = 0, Confirms()
        if self.sent_events:  # a channel of its own, without confirms (the reply connection has none by default)
            self.events = self.app.events.Dispatcher(
                conn, hostname=self.origin, channel=conn.channel(), buffer_while_offline=False
            )
        self._conn = conn

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirms.settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirms.refused += self.confirms.settle(delivery_tag, multiple)  # settled, but not taken: lost

    def publish(self, name: str, task_id: str, kwargs: dict[str, Any]) -> None:
        """Publish one task (connection errors propagate: the caller reports the task as not sent)."""
        self._open()
        queue, hard, soft = self.routes[name]
        headers, properties, body, sent_event = self.app.amqp.as_task_v2(
            task_id,
            f"celery_app.{name}",
            args=(),
            kwargs=kwargs,
            reply_to=self.replies.name,
            time_limit=hard,
            soft_time_limit=soft,
            origin=self.origin,
            create_sent_event=self.sent_events,
        )
        content_type, encoding, data = dumps(body, serializer="json")
        message = amqp.Message(
            data,
            content_type=content_type,
            content_encoding=encoding,
            application_headers=headers,
            delivery_mode=2,
            **properties,
        )
        self.channel.basic_publish(message, exchange="", routing_key=queue)  # direct queue: the default exchange
        self.published += 1
        if self.events is not None:
            sent_event.update(queue=queue, exchange="", routing_key=queue)
            self.events.send("task-sent", **sent_event)

    def unconfirmed(self) -> int:
        """Published and not yet settled by the broker (acked or refused)."""
        return self.published - self.confirms.settled()
