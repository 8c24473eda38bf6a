"""The workers' control queue (dts.app.mailbox): named afresh for each connection, still exclusive and bound
to the control fanout, so a worker reconnecting to another node of a RabbitMQ 4.3 cluster never meets its
old queue locked by the dead node (tests/test_cluster.py kills that node mid-burst on each line)."""

from __future__ import annotations

from helpers import ROOT

from dts.app import make_app
from dts.config import load_settings


def test_each_connection_gets_a_control_queue_of_its_own_under_the_node_name():
    app = make_app(load_settings(ROOT / "test-config.yml"))
    mailbox = app.control.mailbox
    first, second = mailbox.get_queue("worker-a@host"), mailbox.get_queue("worker-a@host")
    assert first.name != second.name
    assert {q.name.rsplit(".", 1)[0] for q in (first, second)} == {"worker-a@host.celery.pidbox"}
    assert first.exclusive and first.exchange.type == "fanout" and first.exchange.name == "celery.pidbox"
