"""Every broker call on a deadline, checked over the parsed source of the product (no import is run).

A call that can wait on the broker needs a connection, and every connection the project opens comes from
dts.amqp.deadline (`connect`, `session`: connected by a deadline, calls on it bounded, kombu's endless
reconnecting switched off); questions to the workers go through dts.amqp.control.ask_workers on such a
connection. So the check is: outside those two modules, nothing opens a connection or reaches for the
app's pooled ones, Celery's remote control, or kombu's retrying publish, except the places listed in
ALLOWED with the reason their wait is bounded otherwise.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

HELPERS = {"dts/amqp/deadline.py", "dts/amqp/control.py"}
# attribute names that open a connection, take a pooled one, or ask the workers through Celery's own client
OPENERS = {
    "connection_for_write",
    "connection_for_read",
    "connection_or_acquire",
    "producer_or_acquire",
    "producer_pool",
    "_pool",
    "control",
    "Connection",
    "ensure_connection",
    "maybe_declare",
    "apply_async",
    "delay",
}
ALLOWED = {
    (
        "dts/runs/live.py",
        "connection_for_read",
    ): "the event stream's consumer thread: its heartbeat ends a silent broker",
    ("dts/provision.py", "Connection"): "a login probe: a bounded connect, no request; closed with close_quietly",
    ("dts/provision.py", "ensure_connection"): "the login probe's connect, with its own timeout",
    ("dts/runtime/deadletter.py", "producer_pool"): "in the worker: its connection is watched by broker_heartbeat, the "
    "message stays unacknowledged (late acks) until the copy is confirmed",
    ("dts/runtime/deadletter.py", "retry=True"): "the same copy: three retries at most (its retry_policy)",
    ("dts/amqp/checks.py", "Connection"): "node_answers: one bounded connect per cluster node (its share of the "
    "timeout), no request; closed with close_quietly",
    ("dts/amqp/checks.py", "ensure_connection"): "node_answers' connect: two attempts within the node's share",
    ("dts/amqp/checks.py", "_pool"): "forget_connections: drops the pooled connections without a handshake",
    ("dts/amqp/replies.py", "connection_for_read"): "reads the transport's error classes; never connects",
    (
        "dts/runtime/work.py",
        "producer_pool",
    ): "warm_result_channel: a pooled producer taken with a timeout (WARM_UP_BOUND)",
    ("dts/runtime/work.py", "ensure_connection"): "warm_result_channel: one attempt within WARM_UP_BOUND, the channel "
    "opened under bounded()",
}


def product_files() -> list[Path]:
    return sorted([*ROOT.glob("*.py"), *(ROOT / "dts").rglob("*.py")])


def reaches(path: Path) -> set[tuple[int, str]]:
    """(line, name) of each use of an OPENERS attribute, of the name Connection, and of `retry=True`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in OPENERS:
            found.add((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id == "Connection" and isinstance(node.ctx, ast.Load):
            found.add((node.lineno, node.id))
        elif isinstance(node, ast.keyword) and node.arg == "retry" and getattr(node.value, "value", None) is True:
            found.add((node.value.lineno, "retry=True"))
    return found


def unbounded() -> list[str]:
    out = []
    for path in product_files():
        name = path.relative_to(ROOT).as_posix()
        if name in HELPERS:
            continue
        out += [f"{name}:{line}: {what}" for line, what in sorted(reaches(path)) if (name, what) not in ALLOWED]
    return out


def test_no_broker_call_bypasses_the_deadline_helpers():
    assert unbounded() == []


def test_the_check_sees_an_unbounded_call(tmp_path, monkeypatch):
    """The check is not vacuous: it finds the connection, the pooled publish and the retrying call it forbids."""
    (tmp_path / "dts").mkdir()
    (tmp_path / "dts" / "x.py").write_text(
        "def f(app):\n"
        "    with app.connection_for_write() as conn:\n"
        "        app.control.ping(timeout=1)\n"
        "        producer.publish({}, retry=True)\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert unbounded() == ["dts/x.py:2: connection_for_write", "dts/x.py:3: control", "dts/x.py:4: retry=True"]


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_every_allowed_place_still_exists(key):
    """An exception whose code moved or went away is removed from the list, not left to hide a new one."""
    path, what = key
    assert any(name == what for _, name in reaches(ROOT / path)), f"{path} no longer uses {what}: drop it from ALLOWED"
