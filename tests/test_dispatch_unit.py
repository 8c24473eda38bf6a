"""Unit tests (no broker): dispatch.py's pure helpers, output lines and argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import dispatch
from celery_app import load_config

ROOT = Path(__file__).resolve().parent.parent
CFG = load_config(ROOT / "test-config.yml")


def result(task: str, worker: str, seconds: float, retries: int = 0, delays=()):
    return {
        "message": f"Hello from Task {task[-1].upper()}", "task": task, "task_id": f"id-{task}",
        "queue": f"queue_{task[-1]}", "worker": worker, "retries": retries, "retry_delays": list(delays),
        "started_at": "t0", "finished_at": "t1", "execution_time": seconds,
    }  # fmt: skip


def outcomes(worker_a="worker-a-1@h", worker_b="worker-b-1@h"):
    out = []
    for task, worker, seconds in (("task_a", worker_a, 0.1), ("task_b", worker_b, 0.2)):
        o = dispatch.Outcome(task, f"id-{task}", result(task, worker, seconds))
        o.isolation_breach = dispatch.isolation_breach(task, o.result, CFG)
        out.append(o)
    return out


def test_report_has_the_seed_lines_and_an_honest_comparison():
    outs = outcomes()
    summary = dispatch.summarise(outs, total=0.25)
    lines = dispatch.format_report(CFG, outs, summary)
    assert "Result from task_a: Hello from Task A" in lines
    assert "Result from task_b: Hello from Task B" in lines
    assert "Task A execution time: 0.100s" in lines
    assert "Task B retries: 0" in lines
    assert "Total dispatcher time: 0.250s (concurrent execution)" in lines
    assert any(line.startswith("Sum of task execution times: 0.300s") for line in lines)
    assert any(
        line.startswith("Speed-up from concurrency: 1.20x; overhead beyond the longest task: 50.0 ms") for line in lines
    )
    assert lines[-1] == "Isolation: OK (task_a on worker-a, task_b on worker-b)"
    assert summary["failed"] == []


def test_retries_and_backoff_are_reported():
    o = dispatch.Outcome("task_a", "x", result("task_a", "worker-a-1@h", 0.1, retries=2, delays=(0.05, 0.1)))
    lines = dispatch.format_report(CFG, [o], dispatch.summarise([o], 0.5))
    assert "Task A retries: 2 (backoff 0.05s, 0.10s)" in lines
    assert "Total retries: 2" in lines


def test_isolation_breach_fails_and_says_what_ran_where():
    outs = outcomes(worker_a="worker-b-1@h")
    summary = dispatch.summarise(outs, 0.3)
    assert summary["failed"] == ["task_a"]
    lines = dispatch.format_report(CFG, outs, summary)
    assert "Task A ISOLATION BREACH: task_a ran on worker-b-1@h (pool worker-b), expected a worker-a worker" in lines
    assert lines[-1] == "FAILED: task_a"


def test_retries_of_a_task_that_gave_up_are_counted():
    failed = dispatch.Outcome(
        "task_a", "x", error="TransientError: boom (attempt 4); gave up after 4 attempts (max_retries=3)"
    )
    assert dispatch.summarise([failed, *outcomes()[1:]], 1.0)["total_retries"] == 3


def test_failed_task_is_reported_not_dropped():
    outs = [dispatch.Outcome("task_a", "x", error="TransientError: boom"), *outcomes()[1:]]
    summary = dispatch.summarise(outs, 0.3)
    lines = dispatch.format_report(CFG, outs, summary)
    assert "Task A FAILED: TransientError: boom" in lines
    assert summary["failed"] == ["task_a"]


@pytest.mark.parametrize(
    ("overrides", "order"),
    [({}, ["task_b", "task_a"]), ({"duration": 0.5}, ["task_a", "task_b"])],
)
def test_longest_task_is_sent_first(overrides, order):
    assert dispatch.send_order(CFG, overrides) == order


def test_label():
    assert dispatch.label("task_a") == "Task A"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--fail-rate", "2"], "must be between 0 and 1"), (["--timeout", "-1"], "must be a number > 0"), (["--timeout", "nan"], "must be a number > 0"),
     (["--fail-times", "x"], "must be an integer >= 0")],
)  # fmt: skip
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("retry:\n  max_retries: -1\n")
    assert dispatch.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "dispatch.py: error: bad.yml: retry.max_retries must be between 0 and 100 (got -1)"


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        dispatch.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "python dispatch.py --fail-rate 0.5" in out and "exit codes:" in out
