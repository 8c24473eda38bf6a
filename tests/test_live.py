"""The live view against real workers: dispatch.py's lines from Celery's task events, piped (plain) and
in a pseudo-terminal (colour, a table), --quiet, task events switched off, and the load test's progress."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
from helpers import run_cli, run_in_pty, write_config

pytestmark = pytest.mark.integration

LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3}) (SENT|RECEIVED|STARTED|RETRY|SUCCESS|FAILURE|UNKNOWN) +(task_[ab]) (\S+) (\S+)(?:  (.*))?$"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def live_lines(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """Per task id, its (state, where, detail) lines in the order shown."""
    seen = defaultdict(list)
    for line in text.splitlines():
        match = LINE.match(line.rstrip("\r"))
        if match:
            _, state, _task, task_id, where, detail = match.groups()
            seen[task_id].append((state, where, detail or ""))
    return seen


def result_tasks(path) -> dict[str, dict]:
    return {t["task"]: t for t in json.loads(path.read_text())["tasks"]}


def test_piped_dispatch_shows_every_state_of_each_task_in_order_without_colour(config_path, clean_queues, tmp_path):
    out_file = tmp_path / "d.json"
    proc = run_cli(
        "dispatch.py", "--config", str(config_path), "--fail-times", "1", "--output", str(out_file), env={"CI": "true"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not ANSI.search(proc.stdout)
    seen = live_lines(proc.stdout)
    tasks = result_tasks(out_file)
    assert set(seen) == {t["task_id"] for t in tasks.values()}
    for task in tasks.values():
        lines, worker = seen[task["task_id"]], task["result"]["worker"]
        retried = ["SENT", "RECEIVED", "STARTED", "RETRY", "RECEIVED", "STARTED", "SUCCESS"]
        assert [state for state, _, _ in lines] == retried
        assert lines[0][1] == task["result"]["queue"]
        pool = worker.split("@")[0]
        assert all(where.startswith(pool + "@") for _, where, _ in lines[1:])  # worker lines name a pool worker
        assert lines[1][1] == lines[2][1] == lines[3][1]  # attempt 1: received, started, retried on one worker
        assert lines[4][1] == lines[5][1] == lines[6][1] == worker  # attempt 2 ran where the result says
        assert lines[3][2].startswith("attempt 1 failed: TransientError(") and lines[3][2].endswith(
            "retry 1/3 in 0.05s"
        )
        assert lines[4][2] == "attempt 2"
    table = [line for line in proc.stdout.splitlines() if line.startswith(("Task  ", "task_"))]  # header, rows
    assert re.split(r"\s{2,}", table[0]) == ["Task", "Result", "Worker", "Queue", "Time", "Retries"]
    assert [re.split(r"\s{2,}", row)[1] for row in table[1:]] == ["Hello from Task A", "Hello from Task B"]


def test_dispatch_in_a_terminal_has_colour_live_lines_and_a_table(config_path, clean_queues):
    code, out = run_in_pty("dispatch.py", "--config", str(config_path), "--no-save")
    assert code == 0, out
    assert "\x1b[1;32mSUCCESS\x1b[0m" in out  # the state in its colour
    assert re.search(r"\x1b\[2m\d\d:\d\d:\d\d\.\d{3}\x1b\[0m", out)  # the time dim
    seen = live_lines(ANSI.sub("", out))
    assert len(seen) == 2 and all(
        [s for s, _, _ in lines] == ["SENT", "RECEIVED", "STARTED", "SUCCESS"] for lines in seen.values()
    )
    assert re.search(r"\x1b\[1mTask +Result +Worker +Queue +Time +Retries\x1b\[0m", out)  # the header bold
    plain = ANSI.sub("", out)
    assert re.search(r"^task_a +Hello from Task A +worker-a@\S+ +queue_a ", plain, re.M)


def test_quiet_prints_only_the_results(config_path, clean_queues):
    proc = run_cli("dispatch.py", "--config", str(config_path), "--quiet", "--no-save")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["task_a: Hello from Task A", "task_b: Hello from Task B"]


def test_without_task_events_the_view_shows_result_states(config_path, clean_queues, tmp_path):
    config = write_config(tmp_path / "no-events.yml", task_events="false")
    proc = run_cli("dispatch.py", "--config", str(config), "--no-save", env={"CI": "true"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = live_lines(proc.stdout)
    assert len(seen) == 2
    assert all([state for state, _, _ in lines] == ["SENT", "SUCCESS"] for lines in seen.values())


def test_load_test_progress_plain_when_piped_and_a_bar_in_a_terminal(config_path, clean_queues):
    load = ("--config", str(config_path), "--tasks", "10", "--duration-a", "0", "--duration-b", "0", "--no-save")
    proc = run_cli("load_test.py", *load, env={"CI": "true"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^progress: 20/20 \(100%\), [0-9.]+ tasks/s, ETA 0\.0s$", proc.stderr, re.M), proc.stderr
    code, out = run_in_pty("load_test.py", *load)
    assert code == 0, out
    plain = ANSI.sub("", out)
    assert re.search(r"results .*20/20 [0-9.]+ tasks/s +ETA", plain), plain[-500:]
