"""`make bench`'s pure parts: ratios, verdicts, the rows and their text, the rates taken from samples.
No broker; nothing here asserts a speed."""

from __future__ import annotations

import os
import time

import pytest

from bench.run import consume_rate, sent_rate
from bench.table import MISS, NO_DATA, NO_TARGET, PASS, build_rows, meets, ratio, render, summary, verdict
from dts.reports.load_report import percentile


def test_ratio_is_none_when_unknown_or_divided_by_zero():
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0) is None


@pytest.mark.parametrize(
    ("value", "op", "bound", "expected"),
    [
        (3.0, ">=", 3.0, True),
        (2.9, ">=", 3.0, False),
        (0.5, "<=", 0.5, True),
        (3.0, "<", 3.0, False),
        (None, "<=", 1.0, None),
        (1.0, "<", None, None),
    ],
)
def test_meets(value, op, bound, expected):
    assert meets(value, op, bound) is expected


def test_verdict_miss_wins_then_unknown_then_pass():
    assert verdict([True, True]) == PASS
    assert verdict([True, False, None]) == MISS
    assert verdict([True, None]) == NO_DATA
    assert verdict([]) == NO_TARGET


def test_percentile_nearest_rank():
    """bench's numbers use the reports' percentile (one nearest-rank percentile)."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def measurements(**ours):
    return {
        "ceiling": {"publish_rate": 400.0, "publish_consume_rate": 300.0, "round_trip": {"p50": 0.003, "p99": 0.006}},
        "naive": {
            "throughput": 100.0,
            "rtt": {"p50": 0.010, "p99": 0.020},
            "seed_overhead": 0.012,
            "cpu": {"workers_ms": 2.0, "all_ms": 4.0, "busy": 0.5},
        },
        "ours": {
            "throughput": 320.0,
            "rtt": {"offered_rate": 100, "p50": 0.004, "p99": 0.015},
            "short": {
                "throughput": 150.0,
                "cpu": {"all_ms": 3.0},
                "pools": {"execution_pool": "threads", "concurrency": 4, "prefetch_multiplier": 16},
            },
            "cpu": {"workers_ms": 3.0, "all_ms": 4.4, "busy": 0.97},
            "first": {"starts": 5, "cold_median": 0.009, "warm_median": 0.007},
            "wall": {"median": 0.30},
            "seed_overhead": 0.002,
            "consume_rate": 100.0,
            "publish_rate": 250.0,
            "rss": {"small": {"tasks": 10000, "peak_rss_mib": 40.0}, "large": {"tasks": 100000, "peak_rss_mib": 50.0}},
            "kinds": {
                "builtin": {"p50": 0.0040},
                "call": {"p50": 0.0043},
                "command": {"p50": 0.0065},
                "fork_exec": {"p50": 0.0006},
            },
        }
        | ours,
    }


def test_rows_all_targets_met():
    rows = {r.measurement: r for r in build_rows(measurements())}
    assert rows["no-op throughput, results collected"].ratio == pytest.approx(3.2)
    assert rows["no-op throughput vs ceiling"].ratio == pytest.approx(320 / 300)
    assert rows["single-task round trip p50 at 100/s"].ours == pytest.approx(4.0)  # milliseconds
    assert rows["load-generator publish rate"].ratio == pytest.approx(2.5)
    assert rows["load-generator peak RSS, 100k tasks"].ratio == pytest.approx(1.25)
    assert rows["load-generator peak RSS, 100k tasks"].target == "<= 1.5x 10k"
    assert rows["ceiling: raw kombu round trip p50 at 100/s"].ceiling == pytest.approx(3.0)
    assert rows["CPU per no-op task: workers"].ratio == pytest.approx(1.5)
    assert rows["  all, fast profile"].ratio == pytest.approx(0.75)
    assert rows["CPU per no-op task: all"].ratio == pytest.approx(1.1)
    assert rows["machine CPU busy during the no-op load"].ours == pytest.approx(97.0)
    first = rows["  first dispatch after a fresh start (5 starts), vs warm"]
    assert (first.ours, first.ratio, first.target) == (pytest.approx(9.0), pytest.approx(9 / 7), "<= 1.5x warm")
    assert rows["`python dispatch.py` process wall, median"].verdict == PASS
    fast = rows["  the same, fast profile (threads x4, prefetch 16)"]
    assert (fast.ratio, fast.verdict) == (pytest.approx(1.5), MISS)  # 0.5x the ceiling, and not 2x naive
    call, command = (
        rows["  a no-op callable (os:getpid), vs the built-in"],
        rows["  a no-op command (true), minus the built-in"],
    )
    assert (call.ratio, call.target) == (pytest.approx(4.3 / 4.0), "<= 1.1x built-in")
    assert (command.ours, command.target) == (pytest.approx(2.5), "<= fork/exec + 2 ms (2.60)")
    assert {r.verdict for name, r in rows.items() if r.target and r is not fast} == {PASS}
    assert summary(list(rows.values())) == "targets: 11 PASS, 1 MISS"


@pytest.mark.parametrize(
    ("kinds", "missed"),
    [
        ({"builtin": {"p50": 0.004}, "call": {"p50": 0.0045}}, "  a no-op callable (os:getpid), vs the built-in"),
        (
            {"builtin": {"p50": 0.004}, "command": {"p50": 0.0067}, "fork_exec": {"p50": 0.0006}},
            "  a no-op command (true), minus the built-in",
        ),
    ],
)
def test_your_own_tasks_rows_miss_past_their_targets(kinds, missed):
    rows = {r.measurement: r for r in build_rows(measurements(kinds=kinds))}
    assert rows[missed].verdict == MISS


def test_rows_misses_and_missing_numbers():
    slow_start = {"starts": 5, "cold_median": 0.012, "warm_median": 0.007}
    rows = build_rows(measurements(seed_overhead=0.011, throughput=None, first=slow_start, wall={"median": 0.36}))
    rows = {r.measurement: r for r in rows}
    assert rows["seed-scenario overhead, median"].verdict == MISS  # below naive's, but above 0.8x
    assert rows["  first dispatch after a fresh start (5 starts), vs warm"].verdict == MISS
    assert rows["`python dispatch.py` process wall, median"].verdict == MISS
    assert rows["no-op throughput, results collected"].verdict == NO_DATA
    assert "n/a (not measured)" in summary(list(rows.values()))


def test_rows_from_nothing_do_not_fail():
    rows = build_rows({})
    assert all(r.verdict in (NO_TARGET, NO_DATA) for r in rows)
    assert "n/a" in render(rows)


def test_render_two_tables_of_88_columns():
    lines = render(build_rows(measurements())).splitlines()
    assert lines[0].split() == ["measurement", "unit", "ours", "naive", "ceiling", "ratio"]
    assert set(lines[1]) <= {"-", " "}
    targets = lines.index("")  # then the measurements with a target, their verdicts
    assert lines[targets + 1].split() == ["measurement", "ratio", "target", "verdict"]
    assert any("3.20x naive" in line and line.rstrip().endswith("PASS") for line in lines[targets:])
    assert max(len(line) for line in lines) <= 88
    assert any(line.startswith("    ") for line in lines)  # a long measurement's name, wrapped


def test_rates_from_samples():
    samples = [
        {"ok": True, "sent_at": 100.0, "started_at": "2026-01-01T00:00:00+00:00", "execution_time": 0.5},
        {"ok": True, "sent_at": 100.5, "started_at": "2026-01-01T00:00:01+00:00", "execution_time": 1.0},
        {"ok": False, "sent_at": 101.0, "started_at": None, "execution_time": None},
    ]
    assert consume_rate(samples) == pytest.approx(2 / 2.0)  # 2 done between the first start and the last finish
    assert sent_rate(samples) == pytest.approx(2 / 1.0)
    assert consume_rate(samples[:1]) is None


def test_cpu_meter_counts_a_busy_child_process_and_its_parent():
    import subprocess
    import sys

    from bench.cpu import CpuMeter, machine_ticks, tree

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        assert child.pid in tree([os.getpid()])
        meter = CpuMeter([os.getpid()])  # this process's tree: the busy child counts as a worker
        deadline = time.monotonic() + 10
        while meter._snapshot()["workers"] - meter.start["workers"] < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the child's CPU time
        usage = meter.stop(tasks=10)
    finally:
        child.communicate(b"\n", timeout=10)
    assert usage["workers_ms"] >= 25  # >= 0.25 s over 10 tasks
    assert 0 < usage["busy"] <= 1
    busy, total = machine_ticks()
    assert 0 < busy <= total


def test_pool_settings_parse_or_say_what_is_wrong():
    from bench.pools import parse_setting

    assert parse_setting("threads:4:16") == {
        "pools": {"execution_pool": "threads", "concurrency": 4, "prefetch_multiplier": 16},
        "monitoring": {"task_events": True},
    }
    assert parse_setting("solo:1:1:noevents")["monitoring"] == {"task_events": False}
    assert parse_setting("prefork:1:1:window=0")["monitoring"] == {"task_events": True, "event_window": 0.0}
    for bad in ("gevent:1:1", "threads:4", "threads:x:16", "threads:0:16", "threads:4:16:fast", "solo:1:1:window=2"):
        with pytest.raises(ValueError, match=r"POOL|whole numbers|concurrency"):
            parse_setting(bad)


def test_profile_aggregate_counts_each_function_once_per_stack():
    from bench.profile import aggregate

    raw = (
        "main (w.py:1);loop (lib/python3.11/site-packages/kombu/hub.py:10);loop (lib/python3.11/site-packages/kombu/hub.py:12) 3\n"
        "main (w.py:1);send (billiard/compat.py:5) 1\n"
        "not a stack line\n"
    )
    total, inclusive, own = aggregate(raw)
    assert total == 4
    assert inclusive["loop (kombu/hub.py)"] == 3  # on 3 samples, though twice on each stack (recursion)
    assert inclusive["main (w.py)"] == 4 and own["main (w.py)"] == 0
    assert own == {"loop (kombu/hub.py)": 3, "send (billiard/compat.py)": 1}


def json_file_line(record: dict | str) -> bytes:
    """One line as Docker's json-file driver writes it: the worker's line inside {"log": ...}."""
    import json

    text = record if isinstance(record, str) else json.dumps(record)
    return (json.dumps({"log": text + "\n", "stream": "stderr", "time": "2026-01-01T00:00:00Z"}) + "\n").encode()


def test_bench_logs_reads_what_a_container_kept_and_estimates_what_it_wrote(tmp_path):
    """bench.logs on json-file logs as Docker leaves them: the banner (text), then per task Celery's received
    line (data.id) and three lines with a task_id; the oldest file first of all, the rotated ones `.1`, `.2`."""
    from bench.logs import MB, read_kept, summarise, verdict

    def task(n: int) -> bytes:
        tid = f"id-{n}"
        return b"".join(
            json_file_line(r)
            for r in (
                {
                    "event": f"Task celery_app.task_a[{tid}] received",
                    "logger": "celery.worker.strategy",
                    "data": {"id": tid},
                },
                {"event": "task started", "logger": "dts.task", "task_id": tid},
                {"event": f"Task celery_app.task_a[{tid}] succeeded", "logger": "celery.app.trace", "task_id": tid},
                {"event": "task succeeded", "logger": "dts.task", "task_id": tid},
            )
        )

    older, newer = tmp_path / "c-json.log.1", tmp_path / "c-json.log"
    older.write_bytes(json_file_line(" -------------- celery@x v5.7.0") + task(1) + task(2))
    newer.write_bytes(task(3))
    kept = read_kept([newer, older])
    assert (kept["tasks"], kept["task_lines"], kept["lines"]) == (3, 12, 13)
    assert kept["bytes"] == older.stat().st_size + newer.stat().st_size
    assert kept["one_task_events"][0].startswith("celery.worker.strategy: Task celery_app.task_a[id-1]")
    per_task = len(task(3))
    assert kept["task_bytes"] == 3 * per_task

    row = summarise(kept, "worker-a@c", "c" * 64, tasks_run=10, max_mb=1, files=3)
    assert row["tasks_rotated_away"] == 7
    assert row["written_bytes_estimate"] == kept["bytes"] + 7 * per_task
    assert row["bound_bytes"] == 3 * MB and row["within_bound"]
    doc = {"tasks": 10, "succeeded": 10, "containers": [row]}
    assert verdict(doc)[0]
    assert not verdict({**doc, "succeeded": 9})[0]
    assert not verdict({**doc, "containers": [{**row, "within_bound": False}]})[0]
    assert not verdict({**doc, "containers": [{**row, "tasks_rotated_away": 0}]})[0]
