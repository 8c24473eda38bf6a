"""Unit tests (no broker): the scale plan and scale.py's argument handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from pools import indices_to_start, indices_to_stop, scale_plan, validate_count

import scale
from celery_app import CliError, load_config

CFG = load_config(Path(__file__).resolve().parent.parent / "test-config.yml")


@pytest.mark.parametrize(
    ("current", "desired", "plan"),
    [({"worker-a": 1, "worker-b": 1}, {"worker-a": 3}, {"worker-a": 2}),
     ({"worker-a": 3}, {"worker-a": 1}, {"worker-a": -2}),
     ({}, {"worker-a": 2, "worker-b": 2}, {"worker-a": 2, "worker-b": 2}),
     ({"worker-a": 2}, {"worker-a": 2}, {"worker-a": 0})],
)  # fmt: skip
def test_scale_plan_is_desired_minus_current(current, desired, plan):
    assert scale_plan(current, desired) == plan


@pytest.mark.parametrize(
    ("existing", "count", "start", "stop"),
    [(set(), 3, [1, 2, 3], []), ({1, 2, 3}, 1, [], [3, 2]), ({1, 3}, 3, [2], []), ({2}, 2, [1], []),
     ({1, 2}, 0, [], [2, 1])],
)  # fmt: skip
def test_worker_indices(existing, count, start, stop):
    assert indices_to_start(existing, count) == start
    assert indices_to_stop(existing, count) == stop


@pytest.mark.parametrize(("pool", "count"), [("worker-c", 1), ("worker-a", 11), ("worker-a", -1)])
def test_bad_counts_are_usage_errors(pool, count):
    with pytest.raises(CliError) as err:
        validate_count(pool, count, CFG)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["worker-a", "x"], "COUNT must be a whole number (got 'x')"), (["worker-a", "-2"], "COUNT must be >= 0 (got -2)"),
     (["worker-z", "1"], "unknown pool 'worker-z'"), (["worker-a"], "missing COUNT"),
     (["worker-a", "50"], "count must be between 0 and workers.max_workers=10 (got 50)"),
     (["--all", "1.5"], "COUNT must be a whole number"), ([], "nothing to do")],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    # bad input is refused before the broker is contacted, so this needs none
    assert scale.main([*argv, "--mode", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_status_counts_slots_of_live_workers_and_unacked_tasks():
    activity = {
        "worker-a-1@h": {"alive": True, "concurrency": 4, "running": 2, "reserved": 1},
        "worker-a-2@h": {"alive": False},
    }
    rows = scale.status_rows(CFG, {"worker-a": ["worker-a-1@h", "worker-a-2@h"]}, {}, activity)
    assert (rows[0]["alive"], rows[0]["slots"], rows[0]["unacked"]) == (1, 4, 3)
    assert rows[1]["workers"] == []
    lines = scale.format_status(rows, "local")
    assert lines[2].split() == ["worker-a", "queue_a", "2", "1", "4", "?", "?", "3"]
    assert lines[3].strip() == "worker-a-1@h  (concurrency 4, running 2, reserved 1)"
    assert lines[4].strip() == "worker-a-2@h  (not answering ping)"
