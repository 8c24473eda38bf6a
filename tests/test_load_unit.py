"""Unit tests (no broker): load_test.py's plan, statistics, ideal time, report and argument errors."""

from __future__ import annotations

import pytest

import load_test
from celery_app import CliError
from load_test import Sample, ideal_time, interleave, parse_sizes, percentile, summarise, task_plan


@pytest.mark.parametrize(
    ("tasks", "mix", "plan"), [(20, 0.5, (20, 20)), (10, 0.8, (16, 4)), (5, 0.0, (0, 10)), (3, 1.0, (6, 0))]
)
def test_task_plan(tasks, mix, plan):
    assert tuple(task_plan(tasks, mix).values()) == plan


def test_interleave_spreads_types_evenly():
    assert interleave({"task_a": 3, "task_b": 3}) == ["task_a", "task_b"] * 3
    order = interleave({"task_a": 4, "task_b": 2})
    assert order.count("task_a") == 4 and order[0] == "task_a" and order[-1] == "task_a"


@pytest.mark.parametrize(("q", "expected"), [(50, 5), (95, 10), (99, 10), (10, 1), (100, 10)])
def test_percentile_nearest_rank(q, expected):
    assert percentile(list(range(10, 0, -1)), q) == expected


def test_percentile_of_nothing():
    assert percentile([], 50) is None


@pytest.mark.parametrize(
    ("executions", "slots", "ideal"),
    [([0.2] * 20, 1, 4.0), ([0.2] * 20, 3, 1.4), ([0.2] * 21, 3, 1.4), ([0.1] * 20, 3, 0.7), ([1.0, 0.1, 0.1], 3, 1.0),
     ([0.1, 0.3], 1, 0.4), ([], 4, 0.0)],
)  # fmt: skip
def test_ideal_time_is_the_lower_bound_for_the_slots(executions, slots, ideal):
    assert ideal_time(executions, slots) == pytest.approx(ideal)


def test_ideal_time_without_slots_is_infinite():
    assert ideal_time([0.1], 0) == float("inf")


@pytest.mark.parametrize("text", ["", "1,x", "0,2", "-1", "1.5"])
def test_bad_sweep_sizes(text):
    with pytest.raises(CliError) as err:
        parse_sizes(text)
    assert err.value.exit_code == 2


def test_parse_sizes():
    assert parse_sizes("1,2, 4,8") == [1, 2, 4, 8]


def sample(task: str, worker: str, sent: float, started: float, execution: float, received: float, retries=0) -> Sample:
    from datetime import UTC, datetime

    s = Sample(task, f"{task}-{sent}", sent)
    s.received_at, s.status = received, "SUCCESS"
    s.result = {"worker": worker, "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
                "execution_time": execution, "retries": retries}  # fmt: skip
    return s


def test_summary_splits_latency_and_measures_efficiency_against_live_slots():
    samples = [
        sample("task_a", "worker-a-1@h", 100.0, 100.0, 0.1, 100.1),
        sample("task_a", "worker-a-1@h", 100.0, 100.1, 0.1, 100.2),
        sample("task_b", "worker-b-1@h", 100.0, 100.0, 0.2, 100.2, retries=1),
        sample("task_b", "worker-b-2@h", 100.0, 100.0, 0.2, 100.2),
    ]
    failed = Sample("task_b", "lost", 100.0, error="no result within 5s")
    report = summarise([*samples, failed], {"worker-a": 1, "worker-b": 2}, wall=0.25)
    assert (report["tasks"], report["completed"], report["failed"], report["retries"]) == (5, 4, 1, 1)
    assert report["failures"] == [{"task": "task_b", "task_id": "lost", "error": "no result within 5s"}]
    assert report["latency"]["max"] == pytest.approx(0.2)
    assert report["queue_wait"]["max"] == pytest.approx(0.1)
    assert report["execution"]["p50"] == pytest.approx(0.1)
    assert report["per_worker"] == {"worker-a-1@h": 2, "worker-b-1@h": 1, "worker-b-2@h": 1}
    assert report["pools"]["task_a"]["ideal"] == pytest.approx(0.2)  # 2 x 0.1 on 1 slot
    assert report["pools"]["task_b"]["ideal"] == pytest.approx(0.2)  # 2 x 0.2 on 2 slots
    assert report["efficiency"] == pytest.approx(0.2 / 0.25)
    assert report["throughput"] == pytest.approx(4 / 0.25)


def test_thresholds_from_config(tmp_path):
    from celery_app import load_config

    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text("load_test: {min_efficiency: 0.9, max_p95: 0.15}\n")
    cfg = load_config(cfg_path)
    report = summarise([sample("task_a", "worker-a-1@h", 0, 0, 0.1, 0.2)], {"worker-a": 1}, wall=0.2)
    problems = load_test.threshold_failures(report, cfg)
    assert problems == [
        "efficiency 0.500 below load_test.min_efficiency 0.9",
        "p95 latency 0.200s above load_test.max_p95 0.15s",
    ]


def test_report_and_sweep_lines():
    report = summarise([sample("task_a", "worker-a-1@h", 0, 0, 0.1, 0.1)], {"worker-a": 1, "worker-b": 0}, wall=0.1)
    lines = load_test.format_report(report)
    assert lines[0] == "Tasks: 1 sent, 1 completed, 0 failed, 0 retries"
    assert lines[-1] == "Efficiency (ideal / actual): 1.000 (work per slot / actual: 1.000)"
    table = load_test.format_sweep(
        [{"size": 1, "report": report}, {"size": 2, "report": dict(report, total_time=0.05)}]
    )
    assert table[1].split()[:3] == ["1", "1", "0.100"] and table[2].split()[5] == "2.00x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--tasks", "0"], "must be an integer >= 1"), (["--mix", "2"], "must be between 0 and 1"),
     (["--duration-a", "-1"], "must be a number >= 0"), (["--fail-rate", "x"], "must be between 0 and 1")],
)  # fmt: skip
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_test.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--sweep", "1,x"], "--sweep takes pool sizes like 1,2,4,8"), (["--sweep", "1,50"], "exceeds workers.max_workers=10"),
     (["--plot", "out.jpg"], "--plot writes a PNG")],
)  # fmt: skip
def test_bad_options_exit_2_before_any_work(argv, message, capsys):
    assert load_test.main(argv) == 2  # refused before the broker is contacted
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
