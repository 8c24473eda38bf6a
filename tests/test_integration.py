"""Integration tests: a real RabbitMQ (a vhost of its own per checkout) and real `celery worker` processes.

The session starts 2 worker-a and 2 worker-b processes (tests/conftest.py). Nothing here is mocked
and nothing waits on a sleep: every wait is a result.get(timeout) or a deadline-bounded poll.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from helpers import IDLE_BROKER_URL, run_cli, run_in_pty, write_config

pytestmark = pytest.mark.integration


def test_dispatch_prints_both_results_and_exits_0(config_path, clean_queues, capsys):
    import dispatch

    assert dispatch.main(["--config", str(config_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Loaded config: Integration test config" in out
    assert "Dispatching tasks..." in out
    assert "Consumers: queue_a 2, queue_b 2" in out
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in out if line.startswith("task_")}
    assert rows["task_a"][1:2] + rows["task_a"][3:] == ["Hello from Task A", "queue_a", rows["task_a"][4], "0"]
    assert rows["task_b"][1:2] + rows["task_b"][3:] == ["Hello from Task B", "queue_b", rows["task_b"][4], "0"]
    assert any(line.startswith("Total dispatcher time: ") for line in out)
    assert out[-2] == "Isolation: OK (task_a on worker-a, task_b on worker-b)"
    assert out[-1].startswith("Result file: ")


SEED_LINES = [  # the challenge's own output (shared/seeds), in its order, with the values read back
    r"Result from task_a: Hello from Task A",
    r"Task A execution time: (?P<a>\d+\.\d{3})s",
    r"Task A retries: 0",
    r"Result from task_b: Hello from Task B",
    r"Task B execution time: (?P<b>\d+\.\d{3})s",
    r"Task B retries: 0",
    r"Total dispatcher time: (?P<total>\d+\.\d{3})s \(concurrent execution\)",
    r"Sequential time would be: (?P<sequential>\d+\.\d{3})s",
    r"Total retries: 0",
]


def seed_values(out: str) -> dict[str, float]:
    """Each seed line found in `out`, in the seed's order; the numbers they carry."""
    values, at = {}, 0
    lines = out.splitlines()
    for pattern in SEED_LINES:
        found = next((i for i in range(at, len(lines)) if re.fullmatch(pattern, lines[i].strip())), None)
        assert found is not None, f"no line {pattern!r} after line {at} in:\n{out}"
        values.update({k: float(v) for k, v in re.fullmatch(pattern, lines[found].strip()).groupdict().items()})
        at = found + 1
    return values


def test_piped_dispatch_prints_the_challenges_own_lines(config_path, clean_queues):
    """`python dispatch.py | cat`: the seed's lines, in its order, with the run's real numbers."""
    proc = run_cli("dispatch.py", "--config", str(config_path))
    assert proc.returncode == 0, proc.stderr
    v = seed_values(proc.stdout)
    assert v["sequential"] == pytest.approx(v["a"] + v["b"], abs=0.0015)
    assert max(v["a"], v["b"]) <= v["total"]  # the tasks ran concurrently: the total covers the longest one
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in proc.stdout.splitlines() if line.startswith("task_")}
    assert rows["task_a"][4] == f"{v['a']:.3f}s" and rows["task_b"][4] == f"{v['b']:.3f}s"  # the table agrees


def test_dispatch_on_a_terminal_prints_the_challenges_lines_too(config_path, clean_queues):
    code, out = run_in_pty("dispatch.py", "--config", str(config_path))
    assert code == 0, out
    seed_values(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).replace("\r", ""))


def test_dispatch_as_a_subprocess_json(config_path, clean_queues):
    proc = run_cli("dispatch.py", "--config", str(config_path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    results = {t["task"]: t["result"] for t in doc["tasks"]}
    assert results["task_a"]["message"] == "Hello from Task A"
    assert results["task_b"]["message"] == "Hello from Task B"
    assert results["task_a"]["worker"].startswith("worker-a@")
    assert results["task_b"]["worker"].startswith("worker-b@")
    assert [t["pool"] for t in doc["tasks"]] == ["worker-a", "worker-b"]
    assert doc["exit_code"] == 0 and doc["summary"]["failed"] == []


def test_concurrency_total_is_well_below_the_sum(config_path, clean_queues):
    proc = run_cli("dispatch.py", "--config", str(config_path), "--json")
    summary = json.loads(proc.stdout)["summary"]
    assert summary["sum_execution_time"] == pytest.approx(0.3, abs=0.05)
    # run one after the other they would take >= 0.3 s; concurrently about the longer one (0.2 s)
    assert summary["total_time"] < 0.85 * summary["sum_execution_time"], summary


def test_isolation_every_task_runs_on_its_own_pool(settings, app, tasks, workers, clean_queues):
    from celery import group

    task_a, task_b = tasks["task_a"], tasks["task_b"]
    burst = group([task_a.s(duration=0.02) for _ in range(10)] + [task_b.s(duration=0.02) for _ in range(10)])
    results = burst.apply_async().get(timeout=60)
    by_task = {"task_a": set(), "task_b": set()}
    for r in results:
        by_task[r["task"]].add(r["worker"])
        assert r["queue"] == {"task_a": "queue_a", "task_b": "queue_b"}[r["task"]]
    assert by_task["task_a"] == set(workers.workers()["worker-a"]), by_task  # both workers, and only them
    assert by_task["task_b"] == set(workers.workers()["worker-b"]), by_task

    names = [name for pool in workers.workers().values() for name in pool]
    active = app.control.inspect(destination=names, timeout=5).active_queues()
    assert set(active) == set(names)
    for worker, queues in active.items():
        expected = "queue_a" if worker.startswith("worker-a@") else "queue_b"
        assert [q["name"] for q in queues] == [expected], (worker, queues)


def test_a_result_read_while_later_tasks_are_sent_is_kept(settings, app, workers, clean_queues):
    """A publish may read the connection (a channel's first declare waits for its answer): a result that
    arrives then belongs to a task already sent, and is kept. Here each publish reads the connection until
    the task's own result has been read, which a loaded machine does by chance."""
    from dts.amqp.publish import TaskPublisher
    from dts.amqp.replies import ReplyQueue
    from dts.runs.dispatch_round import dispatch_round

    read: set[str] = set()

    class ReadingPublisher(TaskPublisher):
        def publish(self, name, task_id, kwargs):
            super().publish(name, task_id, kwargs)
            deadline = time.monotonic() + 30
            while task_id not in read and time.monotonic() < deadline:
                try:
                    self.replies.conn.drain_events(timeout=0.1)
                except TimeoutError:
                    continue

    with ReplyQueue(app) as replies:
        replies.consumer.callbacks.append(lambda body, message: read.add(body.get("task_id")))
        plan = [("task_a", {"duration": 0}), ("task_b", {"duration": 0})]
        outcomes, _, _ = dispatch_round(settings, ReadingPublisher(app, settings, replies), 20, plan, replies)
    assert len(read) == 2  # both results were read inside a publish
    assert [(o.task, o.result and o.result["message"]) for o in outcomes] == [
        ("task_a", "Hello from Task A"),
        ("task_b", "Hello from Task B"),
    ], outcomes


def test_transient_failures_are_retried_with_growing_delays(settings, tasks, clean_queues):
    task_a = tasks["task_a"]
    t0 = time.monotonic()
    result = task_a.apply_async(kwargs={"fail_times": 3}).get(timeout=30)
    elapsed = time.monotonic() - t0
    assert result["message"] == "Hello from Task A"
    assert result["retries"] == 3
    assert result["retry_delays"] == [0.05, 0.1, 0.2]  # backoff_base 0.05 * 2**n, no jitter
    assert elapsed >= sum(result["retry_delays"]) + 4 * 0.1 * 0.9  # really waited: 3 delays + 4 attempts


def test_dispatch_reports_retries(config_path, clean_queues, capsys):
    import dispatch

    assert dispatch.main(["--config", str(config_path), "--fail-times", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in out if line.startswith("task_")}
    assert rows["task_a"][-1] == rows["task_b"][-1] == "2 (backoff 0.05s, 0.10s)"
    assert "Total retries: 4" in out


def test_failure_rate_1_fails_after_max_retries_with_exit_1(config_path, clean_queues):
    proc = run_cli("dispatch.py", "--config", str(config_path), "--fail-rate", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())  # the result line goes on under itself past 88 columns
    assert (
        "Result from task_a: FAILED: TransientError: simulated transient failure in task_a (attempt 4); gave up "
        "after 4 attempts" in said
    )
    assert "task_a  FAILED: TransientError: simulated transient" in proc.stdout  # the table's cell, cut (…)
    assert "FAILED: task_a, task_b" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_broker_unreachable_exits_3_quickly_with_one_line(config_path):
    t0 = time.monotonic()
    proc = run_cli("dispatch.py", "--config", str(config_path), env={"BROKER_URL": "amqp://guest:secret@127.0.0.1:1//"})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3
    assert elapsed < 10
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1//" in err and "make broker" in err
    assert "secret" not in err


def test_queue_without_consumer_exits_4(rabbitmq, tmp_path):
    cfg = write_config(tmp_path / "idle.yml")
    proc = run_cli("dispatch.py", "--config", str(cfg), env={"BROKER_URL": IDLE_BROKER_URL})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "queue_a has no consumer" in err and "make up" in err


def test_bad_config_from_the_command_line_exits_2(tmp_path):
    for text, key in [
        ("retry: {max_retries: [1\n", "YAML syntax error"),
        ("pools: {w: {queues: [q]}}\ncolour: red\n", "colour is not a known key"),
        ("pools: {w: {queues: [queue_a]}}\n", "tasks.task_b.queue must be a pool's queue"),
        ("", "the file is empty"),
    ]:
        path = Path(tmp_path / "bad.yml")
        path.write_text(text)
        proc = run_cli("dispatch.py", "--config", str(path))
        assert proc.returncode == 2 and key in proc.stderr and "bad.yml" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_make_broker_provisions_a_private_vhost_user_and_env_file(rabbitmq, tmp_path):
    env_file = tmp_path / ".env"
    provision = ("-m", "dts", "broker", "--vhost", "dts-test-provision", "--user", "dts-test-provision")
    proc = run_cli(*provision, "--env-file", str(env_file))
    assert proc.returncode == 0, proc.stderr
    assert "created with rabbitmqctl" in proc.stdout
    assert env_file.stat().st_mode & 0o777 == 0o600
    from dts.config import broker_url_from_env_file, read_env_file
    from dts.provision import login_works

    values = read_env_file(env_file)
    assert len(values["DTS_BROKER_PASSWORD"]) == 32 and values["DTS_BROKER_VHOST"] == "dts-test-provision"
    assert login_works(broker_url_from_env_file(values))
    again = run_cli(*provision, "--env-file", str(env_file))
    assert again.returncode == 0 and ": ok" in again.stdout  # idempotent: the working credentials are kept
    assert read_env_file(env_file) == values
    from dts.provision import rabbitmqctl

    rabbitmqctl("delete_user", "dts-test-provision")
    rabbitmqctl("delete_vhost", "dts-test-provision")


def test_provisioning_without_a_broker_exits_3_with_one_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DTS_BROKER_USER=u\nDTS_BROKER_PASSWORD=p\nDTS_BROKER_VHOST=v\nDTS_BROKER_PORT=1\n")
    proc = run_cli("-m", "dts", "broker", "--env-file", str(env_file), timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot reach the broker at localhost:1" in proc.stderr
    assert "make broker" in proc.stderr and "Traceback" not in proc.stderr


def test_failover_urls_reach_the_first_node_that_answers(settings, config_path, clean_queues, tmp_path):
    """A `;`-separated BROKER_URL is the nodes of one cluster: nodes that refuse connections (ports 1, 2)
    are skipped, one attempt each, for the next one, and the run succeeds there (the workers were given the
    live URL only). Classic queues, as the session's workers declared them (`auto` would ask for quorum)."""
    vhost = settings.broker.url.rsplit("/", 1)[-1]
    dead = f"amqp://guest:guest@127.0.0.1:1/{vhost};amqp://guest:guest@127.0.0.1:2/{vhost}"
    config = tmp_path / "classic.yml"
    config.write_text(
        config_path.read_text().replace("  connect_timeout: 5\n", "  connect_timeout: 5\n  queue_type: classic\n", 1)
    )
    assert "queue_type: classic" in config.read_text()
    proc = run_cli(
        "dispatch.py", "--config", str(config), "--json", env={"BROKER_URL": f"{dead};{settings.broker.url}"}
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["failed"] == []


def test_the_tests_forget_the_vhosts_and_users_they_made(rabbitmq):
    """What one checkout's tests made is deleted (forget_test_names, run when the session ends); a project's
    own `dts-<hash>`, another checkout's test vhosts and other names are kept."""
    from helpers import forget_test_names, made_by_tests

    from dts.provision import ensure_vhost, rabbitmqctl

    ours, theirs, project = "dts-test-forget-0badc0de", "dts-test-forget-1badc0de", "dts-0badc0de"
    assert made_by_tests(
        [ours, f"{ours}-broken", "dts-cl-0badc0de-a", project, "/", "dts-test-x", theirs], "0badc0de"
    ) == [
        ours,
        f"{ours}-broken",
        "dts-cl-0badc0de-a",
    ]
    try:
        for name in (ours, theirs, project):
            ensure_vhost(name, "guest")
        rabbitmqctl("add_user", ours, "secret")
        assert sorted(forget_test_names("0badc0de")) == [ours, ours]  # the vhost, the user
        vhosts = rabbitmqctl("list_vhosts", "name").stdout.split()
        assert ours not in vhosts and theirs in vhosts and project in vhosts
        assert ours not in rabbitmqctl("list_users").stdout.split()
    finally:
        for name in (ours, theirs, project):
            if name in rabbitmqctl("list_vhosts", "name").stdout.split():
                rabbitmqctl("delete_vhost", name)
