"""Unit tests (no broker): the load plan (dts.runs.loadgen), statistics and the load report (dts.reports.load_report), and
load_test.py's argument errors."""

from __future__ import annotations

import argparse
import itertools
import json
import math
from datetime import UTC, datetime

import pytest
from helpers import ROOT

import load_test
from dts.cli import load_test as load_cli
from dts.config import load_settings
from dts.errors import ExitCode
from dts.reports.load_report import (
    LoadRun,
    LoadSpec,
    LoadTestReport,
    ideal_time,
    percentile,
    reason,
    render_load,
    render_load_test,
    render_sweep,
    summarise_load,
    threshold_failures,
)
from dts.reports.slots import count_bound, ideal_on, most_at_once, work_bound
from dts.runs.loadgen import interleave, task_plan
from dts.runs.samples import Sample

SETTINGS = load_settings(ROOT / "test-config.yml")


@pytest.mark.parametrize(
    ("tasks", "mix", "plan"), [(20, 0.5, (20, 20)), (10, 0.8, (16, 4)), (5, 0.0, (0, 10)), (3, 1.0, (6, 0))]
)
def test_task_plan(tasks, mix, plan):
    assert task_plan(tasks, load_cli.mix_weights(mix)) == {"task_a": plan[0], "task_b": plan[1]}


def test_interleave_spreads_types_evenly():
    assert interleave({"task_a": 3, "task_b": 3}) == ["task_a", "task_b"] * 3
    assert interleave({"task_a": 4, "task_b": 2}) == ["task_a", "task_b", "task_a", "task_a", "task_b", "task_a"]
    assert interleave({"task_a": 0, "task_b": 3}) == ["task_b"] * 3
    order = interleave(task_plan(50, load_cli.mix_weights(0.8)))
    assert (order.count("task_a"), order.count("task_b")) == (80, 20)
    # one task_b after every four task_a: evenly spread, never bunched
    b_at = [i for i, name in enumerate(order) if name == "task_b"]
    assert all(later - earlier == 5 for earlier, later in itertools.pairwise(b_at))


@pytest.mark.parametrize(("q", "expected"), [(50, 5), (95, 10), (99, 10), (10, 1), (100, 10), (0, 1)])
def test_percentile_nearest_rank(q, expected):
    assert percentile(list(range(10, 0, -1)), q) == expected


def test_percentile_of_nothing():
    assert percentile([], 50) is None


@pytest.mark.parametrize(
    ("executions", "slots", "ideal"),
    [
        ([0.2] * 20, 1, 4.0),
        ([0.2] * 20, 3, 1.4),
        ([0.2] * 21, 3, 1.4),
        ([0.1] * 20, 3, 0.7),
        ([1.0, 0.1, 0.1], 3, 1.0),
        ([0.1, 0.3], 1, 0.4),
        ([], 4, 0.0),
    ],
)
def test_ideal_time_is_the_lower_bound_for_the_slots(executions, slots, ideal):
    assert ideal_time(executions, slots) == pytest.approx(ideal)


def test_ideal_time_without_slots_is_infinite():
    assert ideal_time([0.1], 0) == math.inf


@pytest.mark.parametrize("text", ["", ",", "1,x", "0,2", "-1", "1.5"])
def test_bad_sweep_sizes(text):
    with pytest.raises(argparse.ArgumentTypeError, match="takes 1 to 20 pool sizes from 1 to 1000 like 1,2,4,8"):
        load_cli.parse_sizes(text)


def test_parse_sizes():
    assert load_cli.parse_sizes("1,2, 4,8") == [1, 2, 4, 8]
    assert load_cli.parse_sizes("3") == [3]


def sample(task: str, worker: str, sent: float, started: float, execution: float, received: float, retries=0) -> Sample:
    started_at = datetime.fromtimestamp(started, UTC).isoformat()
    result = {"worker": worker, "started_at": started_at, "execution_time": execution, "retries": retries}
    return Sample(task, f"{task}-{sent}-{started}", sent, received_at=received, result=result)


def test_summary_splits_latency_and_measures_efficiency_against_live_slots():
    samples = [
        sample("task_a", "worker-a@h-1", 100.0, 100.0, 0.1, 100.1),
        sample("task_a", "worker-a@h-1", 100.0, 100.1, 0.1, 100.2),
        sample("task_b", "worker-b@h-1", 100.0, 100.0, 0.2, 100.2, retries=1),
        sample("task_b", "worker-b@h-2", 100.0, 100.0, 0.2, 100.2),
    ]
    failed = Sample("task_b", "lost", 100.0, error="no result within 5s", unknown=True)
    report = summarise_load(SETTINGS, [*samples, failed], {"worker-a": 1, "worker-b": 2}, wall=0.25)
    assert (report.tasks, report.completed, report.failed, report.retries) == (5, 4, 1, 1)
    assert report.failures == (
        {"task": "task_b", "task_id": "lost", "state": "unknown", "error": "no result within 5s"},
    )
    assert [s.state for s in [*samples[:1], failed]] == ["succeeded", "unknown"]
    assert report.latency.max == pytest.approx(0.2)
    assert report.latency.p50 == pytest.approx(0.2)
    assert report.queue_wait.max == pytest.approx(0.1)
    assert report.execution.p50 == pytest.approx(0.1)
    assert report.per_worker == {"worker-a@h-1": 2, "worker-b@h-1": 1, "worker-b@h-2": 1}
    a, b = report.task_types["task_a"], report.task_types["task_b"]
    assert (a.pool, a.tasks, a.completed, a.failed, a.unknown) == ("worker-a", 2, 2, 0, 0)
    assert (b.pool, b.tasks, b.completed, b.failed, b.unknown) == ("worker-b", 3, 2, 0, 1)
    assert (b.failures, report.failure_reasons) == ({"no result within 5s": 1}, {"no result within 5s": 1})
    assert a.queue_wait.max == pytest.approx(0.1) and b.execution.p50 == pytest.approx(0.2)
    pa, pb = (
        report.pools["worker-a"],
        report.pools["worker-b"],
    )  # per pool, not per task type (a pool may serve several)
    assert (pa.slots, pa.slots_max, pa.tasks, pa.completed) == (1, 1, 2, 2)
    assert (pb.slots, pb.slots_max, pb.tasks, pb.completed) == (2, 2, 3, 2)
    assert pa.ideal == pytest.approx(0.2)  # 2 x 0.1 on 1 slot
    assert pb.ideal == pytest.approx(0.2)  # 2 x 0.2 on 2 slots
    assert pa.efficiency == pytest.approx(0.2 / 0.2) and pb.efficiency == pytest.approx(0.2 / 0.2)  # to its last result
    assert report.ideal_time == pytest.approx(0.2)
    assert report.efficiency == pytest.approx(0.2 / 0.25)
    assert report.throughput == pytest.approx(4 / 0.25)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["task_types"]["task_b"]["pool"] == "worker-b" and doc["latency"]["max"] == pytest.approx(0.2)
    assert doc["pools"]["worker-b"]["slots"] == 2


def test_a_pool_without_live_slots_counts_the_workers_that_ran_its_tasks():
    # none answered the slot count before the run, but worker-a@h ran a task: its slot was there (before
    # issue 31 the ideal was infinite); a pool without any worker has no finite ideal
    report = summarise_load(SETTINGS, [sample("task_a", "worker-a@h", 0, 0, 0.1, 0.1)], {"worker-a": 0}, wall=0.1)
    assert (report.pools["worker-a"].slots, report.pools["worker-a"].slots_max) == (0, 1)
    assert report.pools["worker-a"].ideal == pytest.approx(0.1) and list(report.pools) == ["worker-a"]
    assert report.work_per_slot == pytest.approx(0.1)
    assert ideal_on([0.1], []) == math.inf


def test_nothing_completed_has_no_efficiency():
    report = summarise_load(SETTINGS, [Sample("task_a", "x", 0.0, error="boom")], {"worker-a": 1}, wall=1.0)
    assert (report.completed, report.efficiency, report.latency.p95) == (0, None, None)
    assert threshold_failures(report, SETTINGS) == ["1 task(s) failed"]
    ids = [f"id-{n}" for n in range(7)]
    unknown = [Sample("task_a", i, 0.0, error="no result within 5s", unknown=True) for i in ids]
    report = summarise_load(SETTINGS, unknown, {"worker-a": 1}, wall=1.0)
    assert threshold_failures(report, SETTINGS) == [
        "7 task(s) unknown, no result by the deadline: id-0, id-1, id-2, id-3, id-4, … (2 more in the result file)"
    ]


def test_sample_to_json():
    s = sample("task_a", "worker-a@h", 1.0, 1.0, 0.1, 1.2, retries=2)
    doc = s.to_json()
    assert (doc["ok"], doc["worker"], doc["retries"], doc["execution_time"], doc["error"]) == (
        True,
        "worker-a@h",
        2,
        0.1,
        None,
    )
    lost = Sample("task_b", "y", 1.0, error="lost").to_json()
    assert (lost["ok"], lost["worker"], lost["error"]) == (False, None, "lost")


def test_thresholds_from_config(tmp_path):
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(
        "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n"
        "load_test: {min_efficiency: 0.9, max_p95: 0.15}\n"
    )
    settings = load_settings(cfg_path)
    report = summarise_load(settings, [sample("task_a", "worker-a@h", 0, 0, 0.1, 0.2)], {"worker-a": 1}, wall=0.2)
    assert threshold_failures(report, settings) == [
        "efficiency 0.500 below load_test.min_efficiency 0.9",
        "p95 latency 0.200s above load_test.max_p95 0.15s",
    ]
    assert threshold_failures(report, SETTINGS) == []  # the shipped config has no thresholds


def test_report_and_sweep_lines():
    report = summarise_load(
        SETTINGS, [sample("task_a", "worker-a@h", 0, 0, 0.1, 0.1)], {"worker-a": 1, "worker-b": 0}, wall=0.1
    )
    lines = render_load(report)
    assert lines[0] == "Tasks: 1 sent, 1 completed, 0 failed, 0 unknown, 0 retries"
    assert lines[1] == "Total time: 0.100s   throughput: 10.0 tasks/s"
    assert "Tasks per worker: worker-a@h 1" in lines
    assert lines[-2] == "Efficiency per pool (ideal / time to its last result): worker-a 1.000"
    assert lines[-1] == "Efficiency (ideal / actual): 1.000 (work per slot / actual: 1.000)"
    faster = summarise_load(
        SETTINGS, [sample("task_a", "worker-a@h", 0, 0, 0.1, 0.1)], {"worker-a": 2, "worker-b": 2}, wall=0.05
    )
    table = render_sweep([(1, report), (2, faster)])
    assert table[0].split() == ["size", "slots", "time", "s", "tasks/s", "ideal", "s", "speed-up", "efficiency"]
    assert table[1].split() == ["1", "1", "0.100", "10.0", "0.100", "1.00x", "1.000"]
    assert table[2].split() == ["2", "4", "0.050", "20.0", "0.100", "2.00x", "2.000"]


def test_failures_are_listed_at_most_ten():
    lost = [Sample("task_a", f"id-{n}", 0.0, error="lost") for n in range(12)]
    lines = render_load(summarise_load(SETTINGS, lost, {"worker-a": 1}, wall=1.0))
    assert [line for line in lines if line.startswith("FAILED")] == [f"FAILED task_a id-{n}: lost" for n in range(10)]


def run_of(samples: list[Sample], broker_lost=None, pools_lost=None) -> LoadRun:
    from dts.runs.samples import SampleTable

    table = SampleTable.of(samples)
    return LoadRun(
        None, summarise_load(SETTINGS, table, {"worker-a": 1}, wall=1.0), table, broker_lost, pools_lost or {}
    )


def test_a_load_test_report_is_the_result_file_and_the_json_summary():
    run = run_of([sample("task_a", "worker-a@h", 0, 0, 0.1, 0.1), Sample("task_b", "x", 0.0, unknown=True)])
    test = LoadTestReport("c.yml", LoadSpec(1, 0.5, None, 0.0), (run,), ("1 task(s) unknown",))
    body = test.to_json()
    assert list(body) == ["config", "load", "runs", "problems", "broker_lost", "pools_lost"]
    assert body["load"] == {"tasks": 1, "mix": 0.5, "duration_a": None, "duration_b": 0.0}
    assert body["problems"] == ["1 task(s) unknown"] and (body["broker_lost"], body["pools_lost"]) == (None, {})
    assert list(body["runs"][0]) == ["size", "report", "samples"] and test.unknown() == 1
    summary = test.summary_json()
    assert list(summary) == ["config", "load", "problems", "broker_lost", "pools_lost", "reports"]
    assert summary["reports"] == [run.report.to_json()]
    assert render_load_test(test)[-1] == "FAILED: 1 task(s) unknown"


@pytest.mark.parametrize(
    ("broker_lost", "pools_lost", "problems", "code", "problem"),
    [
        (None, {}, (), ExitCode.OK, None),
        (None, {}, ("efficiency 0.5 below",), ExitCode.FAILED, None),
        (
            "publishing stopped",
            {},
            (),
            ExitCode.BROKER_UNREACHABLE,
            "lost the broker connection (publishing stopped) and it did not come back before the deadline: "
            "1 task(s) unknown (ids in the report)",
        ),
        (
            None,
            {"worker-b": "queue_b"},
            (),
            ExitCode.NO_CONSUMER,
            "pool worker-b (queue_b) lost all its consumers and none came back before the deadline: "
            "1 task(s) unknown (ids in the report); start its workers",
        ),
    ],
)
def test_the_verdict_of_a_load_test_that_lost_its_broker_or_a_pool(broker_lost, pools_lost, problems, code, problem):
    from dts.reports.verdict import verdict

    lost = Sample("task_b", "x", 0.0, error="no result within 5s", unknown=True)
    runs = (run_of([lost]), run_of([], broker_lost, pools_lost))
    test = LoadTestReport("c.yml", LoadSpec(1, 0.5, None, None), runs, problems)
    unknown = test.unknown()
    got = verdict(
        ExitCode.FAILED if problems else ExitCode.OK, runs, unknown, f": {unknown} task(s) unknown (ids in the report)"
    )
    assert got == (code, problem)


# --------------------------------------------------------------------------- load_test.py usage errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "0"], "argument --tasks: must be an integer from 1 to 50000 (got '0')"),
        (["--mix", "2"], "argument --mix: must be between 0 and 1 (got '2')"),
        (["--duration-a", "-1"], "argument --duration-a: must be a number from 0 to 3600 (got '-1')"),
        (["--fail-rate", "x"], "argument --fail-rate: must be between 0 and 1 (got 'x')"),
        (["--sweep", "1,x"], "argument --sweep: takes 1 to 20 pool sizes from 1 to 1000 like 1,2,4,8 (got '1,x')"),
        (["--engine", "k8s"], "argument --engine: invalid choice: 'k8s' (choose from auto, compose, local)"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_test.main(argv)
    assert exc.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"load_test.py: error: {message.split(' (choose')[0]}")
    assert err.endswith(" (see load_test.py --help)\n") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sweep", "1,50"], "--sweep size 50 exceeds engine.max_replicas=10"),
        (["--plot", "out.jpg"], "--plot writes a PNG: give a file name ending in .png (got out.jpg)"),
        (["--output", "{tmp}"], "{tmp} is a directory: give a file name, e.g. {tmp}/run.json"),
    ],
)
def test_bad_options_exit_2_before_any_work(tmp_path, argv, message, capsys):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert load_test.main(argv) == ExitCode.USAGE  # refused before the broker is contacted
    captured = capsys.readouterr()
    assert captured.err == f"load_test.py: error: {message.format(tmp=tmp_path)}\n"
    assert captured.out == ""


def test_sweep_limit_follows_engine_max_replicas(tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("engine: {max_replicas: 3}\npools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n")
    assert load_test.main(["--config", str(cfg), "--sweep", "1,4"]) == ExitCode.USAGE
    assert capsys.readouterr().err == "load_test.py: error: --sweep size 4 exceeds engine.max_replicas=3\n"


def test_publisher_confirms_are_counted_one_by_one_multiple_and_out_of_order():
    from dts.amqp.publish import Confirms

    c = Confirms()
    assert [c.settle(1, False), c.settle(2, False)] == [1, 1] and c.settled() == 2
    assert c.settle(5, False) == 1 and c.settled() == 3  # 3 and 4 still open
    assert c.settle(4, True) == 2 and c.settled() == 5  # 3 and 4 by a multiple ack; 5 was already in
    assert c.settle(5, False) == 0 and c.settle(2, True) == 0  # nothing settles twice
    refused = c.settle(7, True)
    c.refused += refused
    assert (refused, c.settled(), c.refused) == (2, 7, 2)


def test_sample_table_keeps_every_task_and_gives_back_the_same_samples():
    import uuid

    from dts.runs.samples import SampleTable

    samples = [
        sample("task_a", "worker-a@h-1", 1764000000.25, 1764000000.5, 0.1, 1764000000.75),
        sample("task_b", "worker-b@h-1", 1764000001.0, 1764000001.125, 0.2, 1764000001.5, retries=2),
        Sample("task_b", "gone", 1764000002.0, received_at=1764000002.5, error="TransientError: boom"),
        Sample("task_a", "lost", 1764000003.0, error="no result within 5s", unknown=True),
    ]
    table = SampleTable.of(samples)
    assert [s.to_json() for s in table] == [s.to_json() for s in samples]
    assert list(table.latencies()) == [0.5, 0.5]
    assert list(table.executions("task_b")) == [0.2]
    assert table.per_worker() == {"worker-a@h-1": 1, "worker-b@h-1": 1}
    assert (len(table), table.total_retries()) == (4, 2)
    ids = [str(uuid.uuid4()), "not-a-uuid", str(uuid.uuid4()).upper()]  # the UUID kept in 16 bytes, others as they are
    table = SampleTable(["task_a"])
    assert [table.task_id(table.add("task_a", i, 0.0)) for i in ids] == ids


def test_a_result_file_streams_its_samples_and_is_one_json_document(tmp_path):
    import json

    from dts.reports.documents import Stream
    from dts.results import save

    path = tmp_path / "load.json"
    save(path, "load_test", {"runs": [{"samples": Stream({"n": n} for n in range(3)), "report": {"tasks": 3}}]})
    doc = json.loads(path.read_text())
    assert doc["runs"][0] == {"samples": [{"n": 0}, {"n": 1}, {"n": 2}], "report": {"tasks": 3}}
    assert doc["kind"] == "load_test" and not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- issue 31: a load of any tasks

OWN = """\
pools:
  worker-a: {queues: [queue_a]}
  worker-b: {queues: [queue_b]}
  worker-c: {queues: [queue_c], concurrency: 1}
tasks:
  add: {queue: queue_c, call: "labjobs:add", params: {x: 1, y: 2}}
  flash: {queue: queue_c, command: [echo, "{board}"], params: {board: rev-a}}
"""


@pytest.fixture
def own_config(tmp_path):
    path = tmp_path / "test-config.yml"
    path.write_text(OWN)
    return path


@pytest.mark.parametrize(
    ("tasks", "weights", "plan"),
    [
        (20, {"add": 3, "flash": 1}, {"add": 30, "flash": 10}),  # tasks x types in all, split by weight
        (5, {"task_a": 1, "add": 2}, {"task_a": 3, "add": 7}),
        (1, {"add": 1, "flash": 1, "task_a": 1}, {"add": 1, "flash": 1, "task_a": 1}),
        (1, {"add": 0.1, "flash": 1000}, {"add": 0, "flash": 2}),
        (7, {"add": 2.5}, {"add": 7}),
    ],
)
def test_task_plan_splits_tasks_x_types_by_weight_exactly(tasks, weights, plan):
    assert task_plan(tasks, weights) == plan and sum(plan.values()) == tasks * len(weights)


def test_a_share_of_task_a_is_the_same_plan_as_before_weights():
    for tasks in (1, 3, 20, 33, 999):
        for mix in (0.0, 0.1, 0.25, 0.333, 0.5, 0.8, 0.9, 1.0):
            n_a = round(2 * tasks * mix)  # the seed's rule
            assert task_plan(tasks, load_cli.mix_weights(mix)) == {"task_a": n_a, "task_b": 2 * tasks - n_a}


def test_mix_arg_takes_a_share_or_declared_names_and_weights():
    assert load_cli.mix_arg("0.8") == 0.8
    assert load_cli.mix_arg("add=3, flash=1.5") == {"add": 3.0, "flash": 1.5}


def args_of(*argv: str) -> argparse.Namespace:
    return load_cli.build_parser().parse_args(list(argv))


def test_the_load_plan_gives_each_declared_task_its_params_and_the_builtins_their_overrides(own_config):
    settings = load_settings(own_config)
    plan, kwargs = load_cli.load_plan(settings, args_of("--mix", "task_a=1,add=2", "--tasks", "5", "--duration-a", "0"))
    assert plan == {"task_a": 3, "add": 7}
    assert kwargs == {"task_a": {"duration": 0.0}, "add": {}}  # add: its declared params, filled by the worker
    _, kwargs = load_cli.load_plan(settings, args_of("--fail-rate", "0.5", "--duration-b", "0.25"))
    assert kwargs == {"task_a": {"failure_rate": 0.5}, "task_b": {"failure_rate": 0.5, "duration": 0.25}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mix", "add=x"], "argument --mix: weight of add must be a number > 0 and <= 1,000,000 (got 'add=x')"),
        (["--mix", "add=0"], "argument --mix: weight of add must be a number > 0 and <= 1,000,000 (got 'add=0')"),
        (["--mix", "add=-1"], "argument --mix: weight of add must be a number > 0 and <= 1,000,000 (got 'add=-1')"),
        (["--mix", "add=nan"], "argument --mix: weight of add must be a number > 0 and <= 1,000,000 (got 'add=nan')"),
        (["--mix", "add=1,add=2"], "argument --mix: names add twice (got 'add=1,add=2')"),
        (["--mix", "Add=1"], "argument --mix: takes NAME=WEIGHT,..., NAME a declared task's name (got 'Add=1')"),
        (["--mix", ",".join(f"t{n}=1" for n in range(21))], "argument --mix: takes at most 20 NAME=WEIGHT"),
    ],
)
def test_a_bad_mix_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_test.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == ExitCode.USAGE and err.count("\n") == 1
    assert err.startswith(f"load_test.py: error: {message}"), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mix", "add=1,nope=2"], "unknown task 'nope': test-config.yml declares task_a, task_b, add, flash"),
        (["--mix", "add=1", "--duration-a", "0"], "--duration-a is for task_a, which --mix leaves out"),
        (["--mix", "add=1,flash=1,task_a=1", "--tasks", "40000"], "--tasks 40000 x 3 task types is more than 100000"),
    ],
)
def test_an_undeclared_task_in_the_mix_is_refused_before_the_broker(own_config, argv, message, capsys):
    # refused before the broker is asked (a broker asked would be exit 3 here: the test vhost is not made)
    assert load_test.main(["--config", str(own_config), *argv]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.err.startswith(f"load_test.py: error: {message}") and captured.err.count("\n") == 1
    assert captured.out == ""


def test_a_report_of_any_tasks_per_type_per_pool_and_failures_by_reason(own_config):
    settings = load_settings(own_config)
    samples = [
        sample("add", "worker-c@h", 0.0, 0.0, 0.2, 0.2),
        sample("flash", "worker-c@h", 0.0, 0.2, 0.2, 0.4),
        sample("task_a", "worker-a@h", 0.0, 0.0, 0.1, 0.1),
        Sample("add", "x", 0.0, received_at=0.5, error="ValueError: bad board; not retried"),
        Sample("flash", "y", 0.0, received_at=0.5, error="ValueError: exit 3"),
        Sample("flash", "z", 0.0, error="no result within 5s: still queued or running", unknown=True),
    ]
    report = summarise_load(settings, samples, {"worker-a": 1, "worker-b": 1, "worker-c": 1}, wall=0.5)
    assert list(report.task_types) == ["task_a", "add", "flash"] and list(report.pools) == ["worker-a", "worker-c"]
    flash = report.task_types["flash"]
    assert (flash.pool, flash.tasks, flash.completed, flash.failed, flash.unknown) == ("worker-c", 3, 1, 1, 1)
    assert flash.failures == {"ValueError": 1, "no result within 5s": 1}
    assert report.failure_reasons == {"ValueError": 2, "no result within 5s": 1}
    c = report.pools["worker-c"]
    assert (c.tasks, c.completed, c.ideal) == (5, 2, pytest.approx(0.4))  # add + flash share worker-c's one slot
    lines = render_load(report)
    assert "flash          worker-c       3     1      1       1      200    200      200    200" in lines
    assert "Failures by reason: ValueError 2, no result within 5s 1" in lines


def grown_pool() -> tuple[list[Sample], float]:
    """worker-a had 1 slot at the start; three more workers joined at 1 s (autoscale): 1 + 4 tasks of 1 s
    ran in 2 s."""
    samples = [sample("task_a", "worker-a@h-1", 0.0, 0.0, 1.0, 1.0)]
    samples += [sample("task_a", f"worker-a@h-{n}", 0.0, 1.0, 1.0, 2.0) for n in range(1, 5)]
    return samples, 2.0


def test_efficiency_never_exceeds_1_when_a_pool_grows_during_the_run():
    samples, wall = grown_pool()
    report = summarise_load(SETTINGS, samples, {"worker-a": 1, "worker-b": 1}, wall=wall)
    pool = report.pools["worker-a"]
    assert (pool.slots, pool.slots_max) == (1, 4)
    assert pool.ideal == pytest.approx(2.0) and report.efficiency == pytest.approx(1.0)
    assert report.efficiency <= 1 and pool.efficiency <= 1
    slots = next(line for line in render_load(report) if line.startswith("Worker slots"))
    assert "worker-a 1->4 (grew during the run)" in slots
    # the formula before issue 31 (the slots asked once, at the start) claimed 2.5
    assert ideal_time([1.0] * 5, 1) / wall == pytest.approx(2.5)


def test_a_worker_lost_mid_run_keeps_its_slot_counted():
    # 2 slots at the start; worker-a@h-2 ran one task and was lost: the ideal still counts 2 slots (lower)
    samples = [sample("task_a", "worker-a@h-1", 0.0, t, 1.0, t + 1.0) for t in (0.0, 1.0, 2.0)]
    samples.append(sample("task_a", "worker-a@h-2", 0.0, 0.0, 1.0, 1.0))
    report = summarise_load(SETTINGS, samples, {"worker-a": 2}, wall=3.0)
    assert report.pools["worker-a"].ideal == pytest.approx(2.0) and report.efficiency == pytest.approx(2 / 3)


def test_a_worker_running_more_at_once_than_its_pool_declares_counts_what_it_ran():
    samples = [sample("task_a", "worker-a@h-1", 0.0, 0.0, 1.0, 1.0) for _ in range(3)]
    report = summarise_load(SETTINGS, samples, {"worker-a": 1}, wall=1.0)
    assert report.pools["worker-a"].slots_max == 3 and report.efficiency == pytest.approx(1.0)


@pytest.mark.parametrize("slots", [1, 2, 3, 7])
@pytest.mark.parametrize(
    "executions", [[0.2] * 20, [0.2] * 21, [1.0, 0.1, 0.1], [0.1, 0.3], [0.0, 0.0], [0.05 * n for n in range(1, 30)]]
)
def test_on_a_steady_pool_the_ideal_is_the_formula_before_issue_31(executions, slots):
    old = max(sum(executions) / slots, math.ceil(len(executions) / slots) * min(executions), max(executions))
    assert ideal_on(executions, [(0.0, slots)]) == old  # exactly
    assert work_bound(sum(executions), [(0.0, slots)]) == sum(executions) / slots


def test_the_bounds_on_slots_that_come_during_the_run():
    lanes = [(0.0, 1), (1.0, 3)]
    assert work_bound(5.0, lanes) == pytest.approx(2.0) and work_bound(0.5, lanes) == pytest.approx(0.5)
    assert count_bound(5, 1.0, lanes) == 2.0 and count_bound(6, 1.0, lanes) == 3.0
    assert count_bound(3, 0.0, [(2.0, 1)]) == 2.0 and work_bound(1.0, []) == math.inf
    assert most_at_once([(0.0, 1.0), (1.0, 2.0), (0.5, 1.5)]) == 2
    assert (
        reason("TransientError: boom; gave up", "failed") == "TransientError" and reason(None, "unknown") == "unknown"
    )
