"""Quorum queues (`broker.queue_type: quorum`) against the real single-node RabbitMQ, in vhosts of their own:
the work and dead-letter queues are declared quorum with a delivery limit, local workers start (Celery turns
global QoS off), a dispatch gets both results, a transient failure is retried and succeeds, a message
redelivered past the limit lands in Q.dead, and a classic vhost is switched by `migrate-queues`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import CHECKOUT, fresh_vhost, local_fleet, run_cli, vhost_url, write_config

pytestmark = pytest.mark.integration
VHOST = f"dts-test-quorum-{CHECKOUT}"
IDLE = f"dts-test-quorum-idle-{CHECKOUT}"  # no worker: the test itself is the consumer that gives up
LIMIT = 2


def quorum_config(path: Path) -> Path:
    """The test config with quorum queues (the broker URL comes from $BROKER_URL: each test's vhost)."""
    write_config(path, replicas="1", backoff_base="0.5")
    text = path.read_text().replace(
        "  connect_timeout: 5\n", f"  connect_timeout: 5\n  queue_type: quorum\n  delivery_limit: {LIMIT}\n"
    )
    path.write_text(text)
    return path


def queue_types(vhost: str) -> dict[str, tuple[str, str]]:
    from dts.provision import rabbitmqctl

    out = rabbitmqctl("list_queues", "-q", "-p", vhost, "name", "type", "arguments").stdout
    rows = [line.split("\t") for line in out.splitlines() if line and not line.startswith("name")]
    return {row[0]: (row[1], row[2]) for row in rows}


@pytest.fixture(scope="module")
def quorum(rabbitmq, tmp_path_factory):
    fresh_vhost(VHOST, "guest")
    path = quorum_config(tmp_path_factory.mktemp("quorum") / "quorum.yml")
    run_dir = tmp_path_factory.mktemp("run")
    with local_fleet(path, vhost_url(VHOST), run_dir) as (settings, app, engine):
        yield path, settings, app, engine, run_dir
    from dts.provision import rabbitmqctl

    rabbitmqctl("delete_vhost", VHOST)


def test_work_and_dead_letter_queues_are_declared_quorum_with_the_delivery_limit(quorum):
    types = queue_types(VHOST)
    for queue in ("queue_a", "queue_b", "queue_a.dead", "queue_b.dead"):
        assert types[queue][0] == "quorum", types
    assert "x-delivery-limit" in types["queue_a"][1] and str(LIMIT) in types["queue_a"][1], types["queue_a"]
    assert "x-dead-letter-exchange" in types["queue_a"][1]


def test_workers_start_without_global_qos_and_dispatch_gets_both_results(quorum):
    path, settings, _app, engine, run_dir = quorum
    assert {pool: len(nodes) for pool, nodes in engine.workers().items()} == {"worker-a": 1, "worker-b": 1}
    logs = "".join(p.read_text(errors="replace") for p in Path(run_dir).glob("*.log"))
    assert "Global QoS is disabled" in logs  # Celery detected the quorum queues
    assert "does not support global qos" not in logs
    proc = run_cli("dispatch.py", "--config", str(path), "--json", env={"BROKER_URL": settings.broker.url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert results["task_a"]["worker"] == engine.workers()["worker-a"][0]
    assert results["task_b"]["worker"] == engine.workers()["worker-b"][0]


def test_a_transient_failure_is_retried_and_succeeds(quorum):
    _path, _settings, app, _engine, run_dir = quorum
    t0 = time.monotonic()
    result = app.send_task(
        "celery_app.task_a",
        kwargs={"fail_times": 1, "duration": 0.01},
        queue="queue_a",
        exchange="queue_a",
        routing_key="queue_a",
    ).get(timeout=30)
    elapsed = time.monotonic() - t0
    assert result["retries"] == 1 and result["retry_delays"] == [0.5]
    assert elapsed >= 0.5, elapsed  # the countdown was kept (held by the worker: the exchanges are direct)
    logs = "".join(p.read_text(errors="replace") for p in Path(run_dir).glob("*.log"))
    assert "Direct exchanges are not supported with native delayed delivery" in logs


def test_a_message_redelivered_past_the_limit_is_dead_lettered(rabbitmq, tmp_path):
    """A consumer that gives up on a message each time (as a task that kills its worker would): after
    LIMIT redeliveries RabbitMQ moves it to queue_b.dead, and `dts dlq list` shows why."""
    from kombu import Connection, Producer

    from dts.app.conf import declared_queues
    from dts.config import load_settings

    fresh_vhost(IDLE, "guest")
    url = vhost_url(IDLE)
    path = quorum_config(tmp_path / "quorum.yml")
    try:
        with Connection(url, transport_options={"confirm_publish": True}) as conn:  # published = in the queue
            channel = conn.default_channel
            for queue in declared_queues(load_settings(path)):
                queue.bind(channel).declare()
            Producer(channel).publish(
                {"poison": 1},
                exchange="queue_b",
                routing_key="queue_b",
                headers={"task": "celery_app.task_b", "id": "poison-1"},
            )
            counts, deadline = [], time.monotonic() + 15
            while len(counts) < LIMIT + 1 and time.monotonic() < deadline:
                message = channel.basic_get("queue_b", no_ack=False)
                if message is None:  # a requeue reaches a quorum queue a moment later
                    time.sleep(0.05)  # polling the queue, under the deadline
                    continue
                counts.append(message.headers.get("x-delivery-count", 0))
                channel.basic_reject(message.delivery_tag, requeue=True)
        assert counts == list(range(LIMIT + 1)), counts  # delivered 1 + LIMIT times
        letters, deadline = [], time.monotonic() + 15
        while not letters and time.monotonic() < deadline:  # dead-lettering follows the last reject
            proc = run_cli("-m", "dts", "dlq", "list", "--json", "--config", str(path), env={"BROKER_URL": url})
            assert proc.returncode == 0, proc.stderr
            letters = json.loads(proc.stdout)["queues"]["queue_b"]["messages"]
        assert [(m["id"], m["reason"].split()[0]) for m in letters] == [("poison-1", "delivery_limit")]
        with Connection(url) as conn:  # and it is not delivered again
            assert conn.default_channel.basic_get("queue_b", no_ack=True) is None
    finally:
        from dts.provision import rabbitmqctl

        rabbitmqctl("delete_vhost", IDLE)


def test_switching_a_classic_vhost_to_quorum_names_the_migration_and_it_keeps_the_messages(rabbitmq, tmp_path):
    from kombu import Connection, Producer

    from dts.app.conf import declared_queues
    from dts.config import load_settings

    fresh_vhost(IDLE, "guest")
    url = vhost_url(IDLE)
    classic = write_config(tmp_path / "classic.yml")
    path = quorum_config(tmp_path / "quorum.yml")
    try:
        with Connection(url) as conn:  # the vhost as the classic configuration left it: 3 tasks waiting
            for queue in declared_queues(load_settings(classic)):
                queue.bind(conn.default_channel).declare()
            for n in range(3):
                Producer(conn.default_channel).publish({"n": n}, exchange="queue_a", routing_key="queue_a")
        env = {"BROKER_URL": url}
        proc = run_cli("dispatch.py", "--config", str(path), env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = proc.stderr.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "exists as another queue type than the configured broker.queue_type: quorum" in err, err
        assert "make migrate-queues" in err

        proc = run_cli("-m", "dts", "dlq", "migrate", "--config", str(path), env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[:4] == [
            "queue_a.dead: redeclared as a quorum queue (0 message(s) moved aside)",
            "queue_a: redeclared as a quorum queue with dead-lettering to queue_a.dead (3 message(s)",
            "  moved aside)",  # 100 characters: wrapped at 88
            "queue_a.dead: 0 message(s) moved back from queue_a.dead.migrating",
        ], proc.stdout
        types = queue_types(IDLE)
        assert {q: types[q][0] for q in ("queue_a", "queue_a.dead", "queue_b", "queue_b.dead")} == dict.fromkeys(
            ("queue_a", "queue_a.dead", "queue_b", "queue_b.dead"), "quorum"
        )
        assert not any(q.endswith(".migrating") for q in types), types
        with Connection(url) as conn:  # a passive declare counts at once (rabbitmqctl's figures lag for quorum)
            assert conn.default_channel.queue_declare("queue_a", passive=True).message_count == 3
        again = run_cli("-m", "dts", "dlq", "migrate", "--config", str(path), env=env)
        assert again.stdout.splitlines() == ["queue_a: ok", "queue_b: ok"], again.stdout + again.stderr
    finally:
        from dts.provision import rabbitmqctl

        rabbitmqctl("delete_vhost", IDLE)
