"""Tasks of your own (`call: module:function` in the config), on real local workers of a third pool, through
the real broker (a vhost of their own): the params (declared defaults, overridden by `--task NAME:K=V`), the
value in the result envelope, an exception `retry_on:` names retried with backoff, `dts.Transient` retried
until the retries run out, any other exception failing at once, a value that is not JSON failing with that
reason, isolation with three pools; and a worker whose callable cannot be imported refusing to start with
one line. The module lives in the project's folder, as a user's would."""

from __future__ import annotations

import json
import textwrap

import pytest
from helpers import CHECKOUT, local_fleet, run_cli, vhost_url

pytestmark = pytest.mark.integration
APPS = {}  # the fleet's config -> its Celery app (to send a message no dispatch would)
VHOST = f"dts-test-own-{CHECKOUT}"
JOBS = '''\
import os
from pathlib import Path

import dts


class Glitch(Exception):
    """A board that did not answer: worth another attempt."""


def add(x=1, y=2):
    return {"sum": x + y, "pid": os.getpid()}


def flaky(marker):
    path = Path(marker)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries < 2:
        raise Glitch(f"no answer on try {tries + 1}")
    return f"answered on try {tries + 1}"


def busy():
    raise dts.Transient("board busy")


def broken():
    raise ValueError("bad board")


def opaque():
    return object()
'''


def project(folder, marker, call_of_add="labjobs:add"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labjobs.py").write_text(JOBS)
    config = folder / "test-config.yml"
    config.write_text(
        textwrap.dedent(f"""\
        name: Own tasks
        broker: {{url: "{vhost_url(VHOST)}", connect_timeout: 5}}
        pools:
          worker-a: {{queues: [queue_a], replicas: 1}}
          worker-b: {{queues: [queue_b], replicas: 1}}
          worker-c: {{queues: [queue_c], replicas: 1, concurrency: 2}}
        tasks:
          task_a: {{duration: 0}}
          task_b: {{duration: 0}}
          add: {{queue: queue_c, call: "{call_of_add}", params: {{x: 1, y: 2}}, choices: {{y: ["2", "3"]}}}}
          flaky:
            queue: queue_c
            call: "labjobs:flaky"
            params: {{marker: "{marker}"}}
            patterns: {{marker: "/.*"}}
            retry_on: [labjobs.Glitch]
          busy: {{queue: queue_c, call: "labjobs:busy"}}
          busy_once: {{queue: queue_c, call: "labjobs:busy", retry: {{max_retries: 1, backoff_base: 0.02}}}}
          broken: {{queue: queue_c, call: "labjobs:broken", retry_on: [labjobs.Glitch]}}
          opaque: {{queue: queue_c, call: "labjobs:opaque"}}
        retry: {{max_retries: 3, backoff_base: 0.05, backoff_max: 1.0, jitter: false}}
        engine: {{name: local, stop_timeout: 30, start_timeout: 60}}
        dispatch: {{timeout: 60, tasks: [task_a, add]}}
        scenarios: {{lab: ["2*add:x=10", task_b]}}
        """)
    )
    return config


@pytest.fixture(scope="module")
def fleet(rabbitmq, tmp_path_factory):
    from helpers import fresh_vhost

    fresh_vhost(VHOST)
    folder = tmp_path_factory.mktemp("own") / "lab"
    config = project(folder, folder / "flaky.count")
    with local_fleet(config, vhost_url(VHOST), folder / ".run") as (_, app, _):
        APPS[config] = app
        yield config


def dispatch(config, *args):
    proc = run_cli("dispatch.py", "--config", str(config), "--no-save", *args, env={"BROKER_URL": vhost_url(VHOST)})
    return proc, json.loads(proc.stdout) if proc.stdout.startswith("{") else None


def test_callables_run_with_their_params_and_report_their_values(fleet):
    proc, doc = dispatch(fleet, "--json", "--task", "add:x=5", "--task", "add", "--task", "task_b")
    assert proc.returncode == 0, proc.stderr
    tasks = {(t["task"], t["result"]["value"]["sum"] if t["task"] == "add" else None): t for t in doc["tasks"]}
    assert set(tasks) == {("add", 7), ("add", 3), ("task_b", None)}  # x=5 over the default 1; y's default 2
    for t in doc["tasks"]:
        pool = "worker-c" if t["task"] == "add" else "worker-b"
        assert t["ok"] and t["pool"] == pool and t["result"]["worker"].startswith(pool + "@")  # isolation


def test_dispatch_tasks_is_what_a_plain_dispatch_sends(fleet):
    proc, _ = dispatch(fleet)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "Result from task_a: Hello from Task A" in proc.stdout
    assert 'Result from add: {"sum": 3' in proc.stdout and "add retries: 0" in proc.stdout


def test_retry_on_and_transient_are_retried_any_other_exception_fails_at_once(fleet):
    tasks = ("flaky", "busy", "busy_once", "broken", "opaque")
    proc, doc = dispatch(fleet, "--json", *(arg for task in tasks for arg in ("--task", task)))
    assert proc.returncode == 1, proc.stderr
    by = {t["task"]: t for t in doc["tasks"]}
    # a task's own retry: keys over the top-level section's (its backoff_max, jitter kept)
    assert "gave up after 2 attempts (max_retries=1)" in by["busy_once"]["error"], by["busy_once"]
    assert by["flaky"]["ok"] and by["flaky"]["result"]["value"] == "answered on try 3"
    assert by["flaky"]["result"]["retries"] == 2 and by["flaky"]["result"]["retry_delays"] == [0.05, 0.1]
    assert by["busy"]["state"] == "failed"
    assert "Transient: board busy; gave up after 4 attempts (max_retries=3)" in by["busy"]["error"]
    assert by["broken"]["state"] == "failed" and "ValueError: bad board; not retried" in by["broken"]["error"]
    assert "not JSON-serialisable" in by["opaque"]["error"]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--task", "nope"], "unknown task 'nope': test-config.yml declares task_a, task_b, add, flaky,"),
        (["--task", "add:z=1"], "--task add: unknown param 'z' (declared: x, y)"),
        (["--task", "add:x=many"], "--task add:x must be an integer (got 'many')"),
        (
            ["--task", "flaky:marker=-rf"],
            "--task flaky:marker must not start with - (an option where an argument goes)",
        ),
        (["--task", "add:y=7"], "--task add:y must be one of 2, 3 (got '7')"),
        (["--task", "flaky:marker=relative"], "--task flaky:marker must match /.* (got 'relative')"),
        (["--task", "task_a:colour=red"], "--task task_a: unknown key 'colour' (a built-in takes duration,"),
        (["--task", "Bad Name"], "argument --task: takes NAME[:KEY=VALUE,...], NAME a task's name"),
    ],
)
def test_a_bad_task_is_refused_before_anything_is_sent(fleet, argv, line):
    proc, _ = dispatch(fleet, *argv)
    assert proc.returncode == 2 and line in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"y": 7}, "param y must be one of 2, 3 (got '7')"),
        ({"z": 1}, "param z is not a declared param (got '1')"),
        ({"x": "-rf"}, "param x must not start with - (an option where an argument goes) (got '-rf')"),
    ],
)
def test_the_worker_checks_a_messages_params_again(fleet, kwargs, why):
    """A message that did not come from `dts dispatch` (any client can publish): refused by the worker."""
    result = APPS[fleet].send_task("celery_app.add", kwargs=kwargs, queue="queue_c", routing_key="queue_c")
    with pytest.raises(Exception) as failed:
        result.get(timeout=30)
    assert str(failed.value) == f"{why}; not run, not retried"


def test_a_worker_whose_callable_cannot_be_imported_refuses_to_start(rabbitmq, tmp_path):
    from helpers import fresh_vhost

    vhost = VHOST + "-broken"  # its own: the module's workers, same node names, answer no ping for it
    fresh_vhost(vhost)
    config = project(tmp_path / "lab", tmp_path / "m", call_of_add="labjobs_missing:add")
    env = {"BROKER_URL": vhost_url(vhost), "DTS_RUN_DIR": str(tmp_path / "run")}
    try:
        up = run_cli("scale.py", "up", "--engine", "local", "--config", str(config), env=env, timeout=120)
        assert up.returncode == 1, up.stdout + up.stderr
        assert "cannot import labjobs_missing:add (ModuleNotFoundError" in up.stderr, up.stderr
        assert up.stderr.count("\n") == 1
    finally:
        run_cli("scale.py", "down", "--engine", "local", "--config", str(config), env=env, timeout=120)


def test_the_live_lines_and_the_report_name_the_callables_own_exception(fleet):
    proc, _ = dispatch(fleet, "--task", "broken")
    assert proc.returncode == 1
    failure = next(line for line in proc.stdout.splitlines() if " FAILURE " in line)
    assert failure.endswith("after 1 attempt(s): ValueError: bad board; not retried"), failure
    assert "Result from broken: FAILED: ValueError: bad board; not retried" in proc.stdout


def test_a_scenario_sends_its_tasks_and_the_list_shows_it(fleet):
    proc, doc = dispatch(fleet, "--json", "--scenario", "lab")
    assert proc.returncode == 0, proc.stderr
    assert sorted((t["task"], (t["result"].get("value") or {}).get("sum")) for t in doc["tasks"]) == [
        ("add", 12),
        ("add", 12),
        ("task_b", None),
    ]
    listed = run_cli("dispatch.py", "--config", str(fleet), "--list", env={"BROKER_URL": vhost_url(VHOST)})
    assert "scenario lab: 2*add:x=10 task_b" in listed.stdout
    assert "  params: x=1, y=2 (one of 2|3)" in listed.stdout and "(matching /.*)" in listed.stdout
    unknown, _ = dispatch(fleet, "--scenario", "nope")
    assert unknown.returncode == 2 and "unknown scenario 'nope': test-config.yml declares lab" in unknown.stderr
