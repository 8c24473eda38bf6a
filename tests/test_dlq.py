"""Dead letters against the real broker and the session's real workers (2 worker-a, 2 worker-b): what the
workers give up on lands in Q.dead with the reason; `make dlq` lists it, `make dlq-replay` re-publishes it,
`make purge` empties the work queues after a confirmation; an old queue gets a migration, not a 406.
Every wait is a deadline-bounded poll or a result.get(timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from helpers import IDLE_BROKER_URL, ROOT, fresh_vhost, run_cli, vhost_url

pytestmark = pytest.mark.integration


def dlq(config_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("-m", "dts", "dlq", *args, "--config", str(config_path), env=env)


def listed(config_path, env: dict | None = None) -> dict:
    proc = dlq(config_path, "list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["queues"]


def poll(what, until, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)  # polling interval, bounded by the deadline


@pytest.fixture
def empty_queues(settings, app, workers):
    """The work queues and their dead-letter queues empty before and after a test."""
    from dts.app.conf import dead_letter_queue_name

    def purge():
        with app.connection_for_write() as conn:
            for queue in settings.queues:
                conn.default_channel.queue_purge(queue)
                conn.default_channel.queue_purge(dead_letter_queue_name(queue))

    purge()
    yield
    purge()


def publish_raw(app, body: bytes, content_type: str, headers: dict) -> None:
    from kombu import Producer

    with app.connection_for_write() as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange="queue_a",
            routing_key="queue_a",
            content_type=content_type,
            content_encoding="utf-8",
            headers=headers,
        )


def test_poison_and_exhausted_retries_are_dead_lettered_once_with_the_reason(config_path, app, tasks, empty_queues):
    """The fault test: good tasks and poison messages together; every one is either completed or
    dead-lettered (with its reason), none is lost, none twice."""
    from celery import group
    from celery.exceptions import NotRegistered

    task_a = tasks["task_a"]

    good = group(task_a.s(duration=0.01) for _ in range(10)).apply_async()
    exhausted = task_a.apply_async(kwargs={"fail_times": 10})
    unknown = app.send_task("celery_app.no_such_task", queue="queue_a", routing_key="queue_a", exchange="queue_a")
    wrong_args = app.send_task(
        "celery_app.task_a", kwargs={"colour": "red"}, queue="queue_a", routing_key="queue_a", exchange="queue_a"
    )
    publish_raw(app, b"not json{", "application/json", {"task": "celery_app.task_a", "id": "bad-json", "lang": "py"})
    publish_raw(app, b'{"a": 1}', "application/json", {"task": "celery_app.task_a", "id": "bad-shape", "lang": "py"})
    sent = 10 + 5

    completed = len(good.get(timeout=60))
    with pytest.raises(Exception, match="gave up after 4 attempts"):  # the client still gets the failure
        exhausted.get(timeout=30)
    with pytest.raises(NotRegistered):
        unknown.get(timeout=30)
    with pytest.raises(TypeError, match="colour"):
        wrong_args.get(timeout=30)

    queues = poll(lambda: listed(config_path), lambda q: q["queue_a"]["count"] >= 5)
    letters = {m["id"]: m for m in queues["queue_a"]["messages"]}
    assert queues["queue_b"]["count"] == 0
    assert letters[exhausted.id]["attempts"] == 4 and "TransientError" in letters[exhausted.id]["reason"]
    assert "gave up after 4 attempts" in letters[exhausted.id]["reason"]
    assert letters[unknown.id]["reason"].startswith("unknown task 'celery_app.no_such_task'")
    assert letters[unknown.id]["attempts"] == 0
    assert letters[wrong_args.id]["reason"].startswith(
        "TypeError: task_a() got an unexpected keyword argument 'colour'"
    )
    assert letters["bad-json"]["reason"].startswith("undecodable body (application/json): DecodeError")
    assert letters["bad-shape"]["reason"].startswith("invalid task message: ValueError")
    for letter in letters.values():
        assert letter["queue"] == "queue_a" and letter["time"] and letter["worker"].startswith("worker-a@")
        assert letter["copies"] == 1
    dead_lettered = len(letters)
    assert (completed, dead_lettered, sent - completed - dead_lettered) == (10, 5, 0)  # none lost

    proc = dlq(config_path, "list")  # the table: each task once, its reason on its line
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "queue_a.dead: 5 dead letter(s)" and lines[-1] == "queue_b.dead: empty"
    at = next(i for i, line in enumerate(lines) if exhausted.id in line)  # its row, then its reason under it
    assert lines[at].endswith(" 4") and lines[at + 1].startswith("  TransientError"), proc.stdout
    assert listed(config_path)["queue_a"]["count"] == 5  # listing consumed nothing


def test_replay_puts_a_dead_letter_back_and_the_task_succeeds(config_path, tasks, empty_queues):
    task_a = tasks["task_a"]

    # a good task that was dead-lettered (as when its workers lacked it during a deploy): straight into the DLX
    result = task_a.apply_async(kwargs={"duration": 0.01}, exchange="queue_a.dlx", routing_key="queue_a")
    poison = task_a.apply_async(kwargs={"fail_times": 10})
    queues = poll(lambda: listed(config_path), lambda q: q["queue_a"]["count"] >= 2)
    assert {m["id"] for m in queues["queue_a"]["messages"]} == {result.id, poison.id}

    proc = dlq(config_path, "replay", "--queue", "queue_a", "--id", result.id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "queue_a.dead -> queue_a: 1 replayed"
    assert result.get(timeout=30)["worker"].startswith("worker-a@")  # the reply reached the original client
    assert [m["id"] for m in listed(config_path)["queue_a"]["messages"]] == [poison.id]  # the other one stays

    proc = dlq(config_path, "replay")  # poison comes back once, with a fresh retry budget, and fails again
    assert proc.returncode == 0 and "queue_a.dead -> queue_a: 1 replayed" in proc.stdout, proc.stderr
    queues = poll(
        lambda: listed(config_path), lambda q: q["queue_a"]["count"] >= 1 and q["queue_a"]["messages"][0]["time"] != ""
    )
    (again,) = queues["queue_a"]["messages"]
    assert again["id"] == poison.id and again["attempts"] == 4 and again["copies"] == 1


def test_make_dlq_and_dlq_replay_and_purge(config_path, app, empty_queues):
    """The Makefile targets themselves, on the test vhost."""

    env = dict(os.environ, DTS_CONFIG=str(config_path))
    poison = app.send_task("celery_app.task_a", kwargs={"colour": "red"}, exchange="queue_a.dlx", routing_key="queue_a")
    poll(lambda: listed(config_path), lambda q: q["queue_a"]["count"] >= 1)
    make = subprocess.run(["make", "-s", "dlq"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert make.returncode == 0, make.stderr
    assert "queue_a.dead: 1 dead letter(s)" in make.stdout and poison.id in make.stdout
    make = subprocess.run(
        ["make", "-s", "purge"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert make.returncode != 0 and "pass --yes (make purge YES=1)" in make.stderr
    make = subprocess.run(["make", "-s", "dlq-replay"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert make.returncode == 0 and "queue_a.dead -> queue_a: 1 replayed" in make.stdout, make.stderr
    with pytest.raises(TypeError):
        poison.get(timeout=30)
    poll(lambda: listed(config_path), lambda q: q["queue_a"]["count"] >= 1)
    make = subprocess.run(
        ["make", "-s", "purge", "YES=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert make.returncode == 0 and "queue_a: 0 message(s) purged" in make.stdout, make.stderr
    assert listed(config_path)["queue_a"]["count"] == 1  # the dead letters are not purged without --dead


def test_purge_empties_the_work_queues_only_after_a_confirmation(rabbitmq, config_path):
    """On the idle vhost (no workers): messages wait in queue_a until purge --yes drops them."""
    from kombu import Connection

    from dts.app.conf import work_queue

    env = {"BROKER_URL": IDLE_BROKER_URL}
    with Connection(IDLE_BROKER_URL) as conn:
        channel = conn.channel()
        work_queue("queue_a").bind(channel).declare()
        channel.queue_purge("queue_a")
        for n in range(3):
            channel.basic_publish(channel.prepare_message(f"m{n}".encode()), exchange="queue_a", routing_key="queue_a")

        def depth(queue: str) -> int:
            return channel.queue_declare(queue=queue, passive=True)[1]

        assert poll(lambda: depth("queue_a"), lambda n: n == 3) == 3
        refused = dlq(config_path, "purge", env=env)  # no terminal, no --yes
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "refusing to purge without a confirmation" in refused.stderr and "--yes" in refused.stderr
        assert depth("queue_a") == 3
        done = dlq(config_path, "purge", "--yes", env=env)
        assert done.returncode == 0, done.stderr
        assert "queue_a: 3 message(s) purged" in done.stdout
        assert depth("queue_a") == 0


def test_a_queue_declared_the_old_way_is_detected_and_migrated_without_losing_messages(rabbitmq, config_path):
    from kombu import Connection, Exchange, Producer, Queue

    from dts.provision import rabbitmqctl

    vhost = "dts-test-migrate-" + rabbitmq.rsplit("-", 1)[-1]
    if vhost in rabbitmqctl("list_vhosts", "name").stdout.split():
        rabbitmqctl("delete_vhost", vhost)
    fresh_vhost(vhost, "guest")
    url = vhost_url(vhost)
    env = {"BROKER_URL": url}
    try:
        with Connection(url) as conn:  # what an older version declared: no dead-letter arguments
            old = Queue("queue_a", Exchange("queue_a", "direct", durable=True), routing_key="queue_a", durable=True)
            old(conn.default_channel).declare()
            for n in range(3):
                Producer(conn.default_channel).publish({"n": n}, exchange="queue_a", routing_key="queue_a")

        proc = run_cli("dispatch.py", "--config", str(config_path), env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = proc.stderr.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "queue queue_a exists without its dead-letter arguments" in err and "make migrate-queues" in err

        proc = dlq(config_path, "migrate", env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [
            "queue_a: redeclared with dead-lettering to queue_a.dead (3 message(s) moved aside)",
            "queue_a: 3 message(s) moved back from queue_a.migrating",
            "queue_b: ok",
        ]
        queues = rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "arguments").stdout
        assert any(line.startswith("queue_a\t3\t") and "x-dead-letter-exchange" in line for line in queues.splitlines())
        assert "queue_a.migrating" not in queues
        again = dlq(config_path, "migrate", env=env)
        assert again.returncode == 0 and again.stdout.splitlines() == ["queue_a: ok", "queue_b: ok"]
        assert dlq(config_path, "list", env=env).returncode == 0  # no longer refused
    finally:
        rabbitmqctl("delete_vhost", vhost)
