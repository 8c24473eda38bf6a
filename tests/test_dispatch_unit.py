"""Unit tests (no broker): the dispatch report (dts.reports.dispatch_report), the send order (dts.runs.dispatch_round) and
dispatch.py's argument and config errors."""

from __future__ import annotations

import json
import re

import pytest
from helpers import ROOT, write_config

import dispatch
from dts.config import load_settings
from dts.errors import ExitCode
from dts.reports.dispatch_report import (
    TaskOutcome,
    bare_results,
    dispatch_report,
    label,
    render_dispatch,
    success,
    summarise_dispatch,
    summarise_rounds,
)
from dts.reports.documents import SCHEMA_VERSION
from dts.runs.dispatch_round import send_order

SETTINGS = load_settings(ROOT / "test-config.yml")


def result(task: str, worker: str, seconds: float, retries: int = 0, delays=()):
    return {
        "message": f"Hello from Task {task[-1].upper()}",
        "task": task,
        "task_id": f"id-{task}",
        "queue": f"queue_{task[-1]}",
        "worker": worker,
        "retries": retries,
        "retry_delays": list(delays),
        "started_at": "t0",
        "finished_at": "t1",
        "execution_time": seconds,
    }


def outcomes(worker_a="worker-a@h-1", worker_b="worker-b@h-1", seconds=(0.1, 0.2)) -> list[TaskOutcome]:
    return [
        success(task, f"id-{task}", SETTINGS.pool_for_task(task).name, result(task, worker, s))
        for task, worker, s in (("task_a", worker_a, seconds[0]), ("task_b", worker_b, seconds[1]))
    ]


def report_lines(outs: list[TaskOutcome], total: float) -> list[str]:
    return render_dispatch(dispatch_report(SETTINGS, [(outs, summarise_dispatch(outs, total))]))


def row(lines: list[str], task: str) -> list[str]:
    """The summary table's cells for `task` (columns are separated by two or more spaces)."""
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("Total dispatcher time"))]
    (line,) = [line for line in table if line.startswith(task + " ")]
    return re.split(r"\s{2,}", line)


def test_report_has_a_summary_table_and_an_honest_comparison():
    outs = outcomes()
    summary = summarise_dispatch(outs, total=0.25)
    assert (summary.sum_execution_time, summary.longest_execution_time) == (pytest.approx(0.3), 0.2)
    assert summary.overhead == pytest.approx(0.05) and summary.speedup == pytest.approx(1.2)
    assert summary.failed == () and summary.total_retries == 0
    lines = report_lines(outs, 0.25)
    assert re.split(r"\s{2,}", lines[0]) == ["Task", "Result", "Worker", "Queue", "Time", "Retries"]
    assert row(lines, "task_a") == ["task_a", "Hello from Task A", "worker-a@h-1", "queue_a", "0.100s", "0"]
    assert row(lines, "task_b") == ["task_b", "Hello from Task B", "worker-b@h-1", "queue_b", "0.200s", "0"]
    assert "Tasks: 2 succeeded, 0 failed; fastest task_a 0.100s, slowest task_b 0.200s" in lines
    assert "Total dispatcher time: 0.250s (concurrent execution)" in lines
    assert "Sequential time would be: 0.300s" in lines
    challenge = ["Result from task_a: Hello from Task A", "Task A execution time: 0.100s", "Task A retries: 0"]
    challenge += ["Result from task_b: Hello from Task B", "Task B execution time: 0.200s", "Task B retries: 0"]
    start = lines.index(challenge[0])
    assert lines[start : start + 6] == challenge and lines[start + 6].startswith("Total dispatcher time: ")
    assert "Speed-up from concurrency: 1.20x; overhead beyond the longest task: 50.0 ms" in lines
    assert lines[-1] == "Isolation: OK (task_a on worker-a, task_b on worker-b)"


def test_exit_code_ok_and_json_document():
    outs = outcomes()
    report = dispatch_report(SETTINGS, [(outs, summarise_dispatch(outs, 0.25))])
    assert report.exit_code == ExitCode.OK
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["schema"] == SCHEMA_VERSION
    assert doc["config"] == {"name": "Basic two-task execution test", "path": str(ROOT / "test-config.yml")}
    assert [(t["task"], t["pool"], t["ok"]) for t in doc["tasks"]] == [
        ("task_a", "worker-a", True),
        ("task_b", "worker-b", True),
    ]
    assert doc["summary"]["failed"] == [] and doc["repeat"] is None and doc["exit_code"] == 0


def test_retries_and_backoff_are_reported():
    o = success("task_a", "x", "worker-a", result("task_a", "worker-a@h", 0.1, retries=2, delays=(0.05, 0.1)))
    summary = summarise_dispatch([o], 0.5)
    assert summary.total_retries == 2 and summary.max_backoff == pytest.approx(0.15)
    lines = report_lines([o], 0.5)
    assert row(lines, "task_a")[-1] == "2 (backoff 0.05s, 0.10s)"
    assert "Total retries: 2" in lines
    assert "Time includes backoff waits of up to 0.150s per task (no speed-up: there were retries)" in lines
    assert not any(line.startswith("Speed-up") for line in lines)


def test_a_long_failure_fits_88_columns_cut_in_the_table_and_whole_under_it():
    error = (
        "TransientError: simulated transient failure in task_a (attempt 4); gave up after 4 attempts (max_retries=3)"
    )
    outs = [TaskOutcome("task_a", "x", "worker-a", error=error), *outcomes()[1:]]
    lines = report_lines(outs, 0.3)
    assert max(len(line) for line in lines) <= 88
    cell = row(lines, "task_a")[1]
    assert cell.endswith("…") and f"FAILED: {error}".startswith(cell[:-1])
    start = lines.index(next(line for line in lines if line.startswith("Result from task_a: ")))
    said = " ".join(" ".join(lines[start : start + 2]).split())  # wrapped once, under the result
    assert said == f"Result from task_a: FAILED: {error}" and lines[start + 1].startswith(" " * 20 + "(")


@pytest.mark.parametrize(
    ("worker", "breach"),
    [
        ("worker-b@h-1", "task_a ran on worker-b@h-1 (pool worker-b), expected a worker-a worker"),
        ("worker-a-2@h", "task_a ran on worker-a-2@h (pool worker-a-2), expected a worker-a worker"),
        (None, "task_a ran on None (pool ), expected a worker-a worker"),
    ],
)
def test_isolation_breach_fails_and_says_what_ran_where(worker, breach):
    outs = outcomes(worker_a=worker)
    assert outs[0].isolation_breach == breach and not outs[0].ok
    assert outs[1].isolation_breach is None and outs[1].ok
    summary = summarise_dispatch(outs, 0.3)
    assert summary.failed == ("task_a",)
    report = dispatch_report(SETTINGS, [(outs, summary)])
    assert report.exit_code == ExitCode.FAILED
    lines = render_dispatch(report)
    assert f"task_a ISOLATION BREACH: {breach}" in lines
    cell = row(lines, "task_a")[1]  # cut to fit the table; in full on the lines under it
    assert cell.endswith("…") and f"FAILED: {breach}".startswith(cell[:-1])
    assert lines[-1] == "FAILED: task_a"


def test_worker_of_the_right_pool_on_any_host_is_no_breach():
    outs = outcomes(worker_a="worker-a@3f2c1d9e0b", worker_b="worker-b@vm-3-12")
    assert all(o.ok for o in outs)


@pytest.mark.parametrize(
    ("error", "retries"),
    [
        ("TransientError: boom (attempt 4); gave up after 4 attempts (max_retries=3)", 3),
        ("TransientError: boom (attempt 1); gave up after 1 attempts (max_retries=0)", 0),
        ("no result within 60s (task x is still queued or running; state PENDING)", 0),
    ],
)
def test_retries_of_a_task_that_gave_up_are_counted(error, retries):
    failed = TaskOutcome("task_a", "x", "worker-a", error=error)
    assert failed.retries == retries
    summary = summarise_dispatch([failed, *outcomes()[1:]], 1.0)
    assert summary.total_retries == retries and summary.failed == ("task_a",)


def test_failed_task_is_reported_not_dropped():
    outs = [TaskOutcome("task_a", "x", "worker-a", error="TransientError: boom"), *outcomes()[1:]]
    summary = summarise_dispatch(outs, 0.3)
    assert summary.failed == ("task_a",)
    assert summary.sum_execution_time == pytest.approx(0.2)  # only the task that ran
    lines = report_lines(outs, 0.3)
    assert row(lines, "task_a")[1:] == ["FAILED: TransientError: boom", "-", "-", "-", "0"]
    assert row(lines, "task_b")[1] == "Hello from Task B"
    assert "Tasks: 1 succeeded, 1 failed; fastest task_b 0.200s, slowest task_b 0.200s" in lines
    assert bare_results(dispatch_report(SETTINGS, [(outs, summarise_dispatch(outs, 0.3))])) == [
        "task_a: FAILED: TransientError: boom",
        "task_b: Hello from Task B",
    ]
    assert lines[-1] == "FAILED: task_a"


def test_repeated_rounds_report_overhead_statistics_of_good_rounds():
    good = [summarise_dispatch(outcomes(), total) for total in (0.25, 0.3, 0.22)]
    bad_outs = [TaskOutcome("task_a", "x", "worker-a", error="boom"), *outcomes()[1:]]
    bad = summarise_dispatch(bad_outs, 5.0)
    repeat = summarise_rounds([*good, bad])
    assert (repeat.rounds, repeat.failed_rounds) == (4, 1)
    assert repeat.total_median == pytest.approx(0.25)
    assert (repeat.overhead_median, repeat.overhead_min, repeat.overhead_max) == (
        pytest.approx(0.05),
        pytest.approx(0.02),
        pytest.approx(0.1),
    )
    rounds = [(outcomes(), s) for s in good] + [(bad_outs, bad)]
    report = dispatch_report(SETTINGS, rounds)
    assert report.exit_code == ExitCode.FAILED  # one failed round fails the run
    assert report.outcomes == tuple(bad_outs)  # the last round is the one shown
    report_ok = dispatch_report(SETTINGS, [(outcomes(), s) for s in good])
    assert render_dispatch(report_ok)[-1] == (
        "Over 3 rounds: total time median 250.0 ms; overhead median 50.0 ms (min 20.0, max 100.0)"
    )


def test_all_rounds_failed_has_no_statistics():
    outs = [TaskOutcome("task_a", "x", "worker-a", error="boom"), TaskOutcome("task_b", "y", "worker-b", error="boom")]
    repeat = summarise_rounds([summarise_dispatch(outs, 1.0)] * 2)
    assert (repeat.failed_rounds, repeat.total_median, repeat.overhead_median, repeat.overhead_min) == (
        2,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("durations", "overrides", "order"),
    [
        ((0.1, 0.2), {}, ["task_b", "task_a"]),
        ((0.3, 0.2), {}, ["task_a", "task_b"]),
        ((0.1, 0.2), {"duration": 0.5}, ["task_a", "task_b"]),
    ],
)
def test_longest_task_is_sent_first(tmp_path, durations, overrides, order):
    settings = load_settings(
        write_config(tmp_path / "c.yml", duration_a=str(durations[0]), duration_b=str(durations[1]))
    )
    plan = [("task_a", dict(overrides)), ("task_b", dict(overrides))]
    assert [name for name, _ in send_order(settings, plan)] == order


@pytest.mark.parametrize(("task", "text"), [("task_a", "Task A"), ("task_b", "Task B")])
def test_label(task, text):
    assert label(task) == text


# --------------------------------------------------------------------------- dispatch.py usage errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fail-rate", "2"], "argument --fail-rate: must be between 0 and 1 (got '2')"),
        (["--timeout", "-1"], "argument --timeout: must be a number > 0 and <= 86400 (got '-1')"),
        (["--timeout", "nan"], "argument --timeout: must be a number > 0 and <= 86400 (got 'nan')"),
        (["--fail-times", "x"], "argument --fail-times: must be an integer from 0 to 100 (got 'x')"),
        (["--repeat", "0"], "argument --repeat: must be an integer from 1 to 1000 (got '0')"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch.main(argv)
    assert exc.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err == f"dispatch.py: error: {message} (see dispatch.py --help)\n"


def test_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\nretry:\n  max_retries: -1\n")
    assert dispatch.main(["--config", str(bad)]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.err == "dispatch.py: error: bad.yml: retry.max_retries must be between 0 and 100 (got -1)\n"
    assert captured.out == ""


def test_config_without_pools_exits_2(tmp_path, capsys):
    bad = tmp_path / "old.yml"
    bad.write_text("retry: {max_retries: 1}\n")
    assert dispatch.main(["--config", str(bad)]) == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("dispatch.py: error: old.yml: pools is required")


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "dts dispatch --fail-rate 0.5" in out and "exit codes:" in out


@pytest.mark.parametrize(
    ("broker_lost", "pools_lost", "unknown", "code", "problem"),
    [
        (None, {}, [], ExitCode.OK, None),
        (None, {"worker-b": "queue_b"}, [], ExitCode.OK, None),  # lost, but every result is in
        (
            "ConnectionResetError",
            {},
            ["id-b"],
            ExitCode.BROKER_UNREACHABLE,
            "lost the broker connection (ConnectionResetError) and it did not come back before the deadline: "
            "1 task(s) unknown (id-b); the report has what is known",
        ),
        (
            None,
            {"worker-b": "queue_b"},
            ["id-a", "id-b"],
            ExitCode.NO_CONSUMER,
            "pool worker-b (queue_b) lost all its consumers and none came back before the deadline: "
            "2 task(s) unknown (id-a, id-b); start its workers (`make up`)",
        ),
    ],
)
def test_the_verdict_of_a_dispatch_that_lost_its_broker_or_a_pool(broker_lost, pools_lost, unknown, code, problem):
    from dts.amqp.replies import Collected
    from dts.reports.verdict import verdict

    waits = [Collected(), Collected(broker_lost=broker_lost, pools_lost=pools_lost)]
    ids = f": {len(unknown)} task(s) unknown ({', '.join(unknown)})" if unknown else ""
    got = verdict(ExitCode.OK, waits, len(unknown), ids, "; the report has what is known", " (`make up`)")
    assert got == (code, problem)
