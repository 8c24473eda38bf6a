"""Unit tests (no broker): the scale plan (dts.engines.base), the status report, and scale.py's argument handling.

scale.py runs in-process only for input it refuses: usage errors exit 2 with one line on stderr before any
broker or worker is contacted (--engine local: no Docker probe)."""

from __future__ import annotations

import pytest
from helpers import ROOT, write_config

import scale
from dts.cli import pools
from dts.config import load_settings
from dts.engines.base import check_sizes, declared_sizes, indices_to_start, indices_to_stop, scale_plan
from dts.errors import CliError, ExitCode
from dts.reports.status_report import (
    StatusReport,
    WorkerStatus,
    health_problems,
    pool_status,
    queue_status,
    render_health,
    render_status,
    status_rows,
    with_verdict,
    worker_rates,
)

SETTINGS = load_settings(ROOT / "test-config.yml")


@pytest.mark.parametrize(
    ("current", "desired", "plan"),
    [
        ({"worker-a": 1, "worker-b": 1}, {"worker-a": 3}, {"worker-a": 2}),
        ({"worker-a": 3}, {"worker-a": 1}, {"worker-a": -2}),
        ({}, {"worker-a": 2, "worker-b": 2}, {"worker-a": 2, "worker-b": 2}),
        ({"worker-a": 2}, {"worker-a": 2}, {"worker-a": 0}),
    ],
)
def test_scale_plan_is_desired_minus_current(current, desired, plan):
    assert scale_plan(current, desired) == plan


@pytest.mark.parametrize(
    ("existing", "count", "start", "stop"),
    [
        (set(), 3, [1, 2, 3], []),
        ({1, 2, 3}, 1, [], [3, 2]),
        ({1, 3}, 3, [2], []),
        ({2}, 2, [1], []),
        ({1, 2}, 0, [], [2, 1]),
        ({2, 5}, 4, [1, 3], []),
        ({1, 2}, 2, [], []),
    ],
)
def test_worker_indices(existing, count, start, stop):
    assert indices_to_start(existing, count) == start
    assert indices_to_stop(existing, count) == stop


def test_declared_sizes_are_the_pools_replicas(tmp_path):
    assert declared_sizes(SETTINGS) == {"worker-a": 1, "worker-b": 1}
    assert declared_sizes(load_settings(write_config(tmp_path / "c.yml", replicas="3"))) == {
        "worker-a": 3,
        "worker-b": 3,
    }


@pytest.mark.parametrize(
    ("desired", "message"),
    [
        ({"worker-c": 1}, "unknown pool 'worker-c': test-config.yml declares worker-a, worker-b"),
        (
            {"worker-a": 11},
            "worker-a: COUNT must be between 0 and engine.max_replicas=10 (got 11); "
            "raise engine.max_replicas in test-config.yml for more",
        ),
        (
            {"worker-a": 1, "worker-b": -1},
            "worker-b: COUNT must be between 0 and engine.max_replicas=10 (got -1); "
            "raise engine.max_replicas in test-config.yml for more",
        ),
    ],
)
def test_bad_sizes_are_usage_errors(desired, message):
    with pytest.raises(CliError) as err:
        check_sizes(desired, SETTINGS)
    assert err.value.exit_code == ExitCode.USAGE
    assert str(err.value) == message


def test_good_sizes_pass():
    check_sizes({"worker-a": 0, "worker-b": 10}, SETTINGS)


@pytest.mark.parametrize(("name", "pool"), [("worker-a", "worker-a"), ("queue_a", "worker-a"), ("queue_b", "worker-b")])
def test_pool_named_takes_a_pool_or_a_queue(name, pool):
    assert pools.pool_named(SETTINGS, name) == pool


def test_pool_named_refuses_anything_else():
    with pytest.raises(CliError) as err:
        pools.pool_named(SETTINGS, "queue_z")
    assert err.value.exit_code == ExitCode.USAGE
    assert str(err.value) == (
        "unknown pool 'queue_z': test-config.yml declares pools worker-a, worker-b (queues queue_a, queue_b)"
    )


@pytest.mark.parametrize(
    ("argv", "desired"),
    [
        (["set", "queue_a", "2"], {"worker-a": 2}),
        (["set", "worker-b", "0"], {"worker-b": 0}),
        (["all", "3"], {"worker-a": 3, "worker-b": 3}),
        (["up"], {"worker-a": 1, "worker-b": 1}),
    ],
)
def test_desired_sizes_from_the_command_line(argv, desired):
    args = scale.build_parser().parse_args(argv)
    assert pools.desired_sizes(args, SETTINGS) == desired


def test_set_queue_resolves_to_its_pool_in_a_multi_queue_config(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("pools: {io: {queues: [queue_a, queue_c]}, cpu: {queues: [queue_b]}}\n")
    args = scale.build_parser().parse_args(["set", "queue_c", "4"])
    assert pools.desired_sizes(args, load_settings(cfg)) == {"io": 4}


# --------------------------------------------------------------------------- scale.py usage errors


def usage_error(capsys, argv: list[str]) -> str:
    """Run scale.main on input it must refuse: exit 2 and exactly one line on stderr; that line."""
    try:
        code = scale.main(argv)
    except SystemExit as exc:  # argparse refuses
        code = exc.code
    assert code == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    assert captured.out == ""
    return captured.err.rstrip("\n")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["set", "worker-a", "-2"],
            "scale.py set: error: argument COUNT: must be an integer from 0 to 1000 (got '-2')",
        ),
        (["set", "worker-a", "x"], "scale.py set: error: argument COUNT: must be an integer from 0 to 1000 (got 'x')"),
        (
            ["set", "worker-a", "1.5"],
            "scale.py set: error: argument COUNT: must be an integer from 0 to 1000 (got '1.5')",
        ),
        (["all", "-1"], "scale.py all: error: argument COUNT: must be an integer from 0 to 1000 (got '-1')"),
        (
            ["logs", "--lines", "-1"],
            "scale.py logs: error: argument --lines: must be an integer from 1 to 10000 (got '-1')",
        ),
        (
            ["logs", "--lines", "0"],
            "scale.py logs: error: argument --lines: must be an integer from 1 to 10000 (got '0')",
        ),
        (["set", "worker-a"], "scale.py set: error: the following arguments are required: COUNT"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, line, capsys):
    assert usage_error(capsys, [*argv, "--engine", "local"]) == f"{line} (see {line.split(': ')[0]} --help)"


@pytest.mark.parametrize(
    ("argv", "subcommand"), [(["worker-a", "-1"], "set"), (["worker-a", "x"], "set"), (["queue_a", "y"], "set")]
)
def test_short_form_is_set(argv, subcommand, capsys):
    line = usage_error(capsys, [*argv, "--engine", "local"])
    assert line.startswith(f"scale.py {subcommand}: error: argument COUNT: must be an integer from 0 to 1000")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["set", "worker-z", "1"],
            "unknown pool 'worker-z': test-config.yml declares pools worker-a, worker-b (queues queue_a, queue_b)",
        ),
        (
            ["worker-z", "1"],
            "unknown pool 'worker-z': test-config.yml declares pools worker-a, worker-b (queues queue_a, queue_b)",
        ),
        (
            ["worker-a", "11"],
            "worker-a: COUNT must be between 0 and engine.max_replicas=10 (got 11); "
            "raise engine.max_replicas in test-config.yml for more",
        ),
        (
            ["set", "queue_b", "50"],
            "worker-b: COUNT must be between 0 and engine.max_replicas=10 (got 50); "
            "raise engine.max_replicas in test-config.yml for more",
        ),
        (
            ["all", "11"],
            "worker-a: COUNT must be between 0 and engine.max_replicas=10 (got 11); "
            "raise engine.max_replicas in test-config.yml for more",
        ),
    ],
)
def test_bad_pool_or_size_exits_2_before_the_broker(argv, line, capsys):
    config = str(ROOT / "test-config.yml")
    assert usage_error(capsys, [*argv, "--engine", "local", "--config", config]) == f"scale.py: error: {line}"


def test_missing_command_and_unknown_engine(capsys):
    assert usage_error(capsys, []).startswith("scale.py: error: the following arguments are required: COMMAND")
    line = usage_error(capsys, ["status", "--engine", "k8s"])
    assert line.startswith("scale.py status: error: argument --engine: invalid choice: 'k8s'")


def test_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("pools: {worker-a: {queues: [queue_a], replicas: 11}}\n")
    line = usage_error(capsys, ["up", "--engine", "local", "--config", str(bad)])
    assert line == "scale.py: error: bad.yml: pools.worker-a.replicas must be between 0 and 10 (got 11)"


# --------------------------------------------------------------------------- status report


def test_status_counts_slots_of_live_workers_and_unacked_tasks():
    from dts.amqp.checks import QueueStats

    activity = {
        "worker-a@h-1": WorkerStatus("worker-a@h-1", True, concurrency=4, running=2, reserved=1, processed=9),
        "worker-a@h-2": WorkerStatus("worker-a@h-2", False),
    }
    stats = {q: QueueStats(q, ready=0, consumers=1) for q in ("queue_a", "queue_b")}
    rows = pool_status(SETTINGS, {"worker-a": ["worker-a@h-1", "worker-a@h-2"]}, stats, activity)
    assert [r.pool for r in rows] == ["worker-a", "worker-b"]
    assert (rows[0].alive, rows[0].slots, rows[0].unacked, rows[0].consumers, rows[0].processed) == (1, 4, 3, 1, 9)
    assert rows[1].workers == () and rows[1].queues == ("queue_b",)
    lines = render_status(StatusReport("local", tuple(rows), broker="amqp://guest:***@h:5672/v"))
    assert lines[0] == "engine: local   broker: amqp://guest:***@h:5672/v (ok)"
    assert lines[1].split() == [
        "pool",
        "queues",
        "wanted",
        "running",
        "slots",
        "consumers",
        "ready",
        "unacked",
        "tasks/s",
    ]
    assert lines[2].split() == ["worker-a", "queue_a", "2", "1", "4", "1", "0", "3", "-"]
    assert lines[3].split() == ["worker-b", "queue_b", "0", "0", "0", "1", "0", "0", "-"]
    assert lines[4].strip() == "worker-a@h-1  (concurrency 4, running 2, reserved 1, processed 9)"
    assert lines[5].strip() == "worker-a@h-2  (not answering ping)"


def test_status_without_a_broker_shows_unknowns_as_dashes():
    rows = pool_status(SETTINGS, {"worker-a": ["worker-a@h-1"]}, {}, {})
    report = with_verdict(
        StatusReport(
            "local",
            tuple(rows),
            broker="amqp://x",
            broker_ok=False,
            broker_error="cannot reach the broker at amqp://x",
            queues=tuple(queue_status(SETTINGS, {})),
        )
    )
    assert status_rows(report)[0] == ("worker-a", "queue_a", "1", "-", "-", "-", "-", "-", "-")
    assert report.exit_code == ExitCode.BROKER_UNREACHABLE
    assert report.problems == ("cannot reach the broker at amqp://x",)
    lines = render_health(report)
    assert lines[0] == "broker  amqp://x  UNREACHABLE"
    assert ["queue_a", "worker-a", "-", "-"] in [line.split() for line in lines]
    assert ["worker-a@h-1", "worker-a", "-"] in [line.split() for line in lines]
    assert lines[-1] == "UNHEALTHY (exit 3): cannot reach the broker at amqp://x"


def test_status_shows_consumers_this_engine_did_not_start():
    from dts.amqp.checks import QueueStats

    stats = {
        "queue_a": QueueStats("queue_a", ready=7, consumers=3),
        "queue_b": QueueStats("queue_b", ready=2, consumers=0),
    }
    activity = {"worker-a@h-1": WorkerStatus("worker-a@h-1", True, concurrency=1)}
    rows = pool_status(SETTINGS, {"worker-a": ["worker-a@h-1"]}, stats, activity)
    assert (rows[0].consumers, rows[0].ready, rows[0].other_consumers) == (3, 7, 2)
    assert (rows[1].consumers, rows[1].ready, rows[1].other_consumers) == (0, 2, 0)
    lines = render_status(StatusReport("compose", tuple(rows)))
    assert "  + 2 consumer(s) of queue_a not started by this engine" in lines


# --------------------------------------------------------------------------- health verdict and tasks/s


def report_of(consumers: dict[str, int], workers: dict[str, list[tuple[str, bool, int]]]) -> StatusReport:
    """A report as collect_status builds it: consumers per queue, (node, answers ping, processed) per pool."""
    from dts.amqp.checks import QueueStats

    stats = {q: QueueStats(q, ready=0, consumers=n) for q, n in consumers.items()}
    activity = {
        n: WorkerStatus(n, alive, concurrency=1, processed=done) for ws in workers.values() for n, alive, done in ws
    }
    names = {pool: [n for n, _, _ in ws] for pool, ws in workers.items()}
    rows = pool_status(SETTINGS, names, stats, activity)
    return with_verdict(StatusReport("local", tuple(rows), queues=tuple(queue_status(SETTINGS, stats))))


def test_healthy_when_every_queue_is_consumed_and_every_worker_answers():
    report = report_of({"queue_a": 1, "queue_b": 2}, {"worker-a": [("a@1", True, 0)], "worker-b": [("b@1", True, 0)]})
    assert health_problems(report) == ([], ExitCode.OK)
    assert render_health(report)[-1] == "healthy"


def test_a_queue_without_consumers_and_a_silent_worker_exit_4():
    report = report_of({"queue_a": 1, "queue_b": 0}, {"worker-a": [("a@1", True, 0), ("a@2", False, 0)]})
    problems, code = health_problems(report)
    assert code == ExitCode.NO_CONSUMER
    assert problems == ["queue_b (pool worker-b) has no consumer", "a@2 (pool worker-a) does not answer ping"]
    lines = render_health(report)
    assert ["a@2", "worker-a", "NO", "REPLY"] in [line.split() for line in lines]
    assert lines[-2:] == [f"UNHEALTHY (exit 4): {p}" for p in problems]


def test_tasks_per_second_is_the_growth_of_processed_counters_over_the_elapsed_time():
    before = report_of(
        {"queue_a": 2, "queue_b": 1},
        {"worker-a": [("a@1", True, 10), ("a@2", True, 5)], "worker-b": [("b@1", True, 7)]},
    )
    after = report_of(
        {"queue_a": 2, "queue_b": 1},
        {
            "worker-a": [("a@1", True, 30), ("a@2", True, 5), ("a@3", True, 50)],  # a@3: new, adds 0
            "worker-b": [("b@1", True, 2)],  # b@1 restarted: its counter went back
        },
    )
    assert [p.tasks_per_s for p in worker_rates(None, after, 1.0).pools] == [None, None]  # first frame
    assert [p.tasks_per_s for p in worker_rates(before, after, 0.0).pools] == [None, None]
    rated = worker_rates(before, after, 2.0)
    assert [p.tasks_per_s for p in rated.pools] == [10.0, 0.0]
    assert [row[-1] for row in status_rows(rated)] == ["10.0", "0.0"]


@pytest.mark.parametrize(
    ("argv", "watch", "count", "interval"),
    [
        (["status"], False, None, 1.0),
        (["status", "--watch", "--count", "2"], True, 2, 1.0),
        (["status", "-w", "--interval", "0.5"], True, None, 0.5),
    ],
)
def test_status_watch_arguments(argv, watch, count, interval):
    args = scale.build_parser().parse_args(argv)
    assert (args.watch, args.count, args.interval) == (watch, count, interval)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["status", "--watch", "--count", "0"],
            "scale.py status: error: argument --count: must be an integer from 1 to 1000000 (got '0')",
        ),
        (
            ["status", "--interval", "0"],
            "scale.py status: error: argument --interval: must be a number > 0 and <= 3600 (got '0')",
        ),
        (["health", "--watch"], "scale.py: error: unrecognized arguments: --watch"),
    ],
)
def test_bad_status_and_health_arguments_exit_2(argv, line, capsys):
    assert usage_error(capsys, [*argv, "--engine", "local"]).startswith(line)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["up", "--broker", "cloud"], "scale.py up: error: argument --broker: invalid choice: 'cloud'"),
        (
            ["up", "--engine", "local", "--broker", "compose"],
            "scale.py: error: --broker compose|cluster (BROKER=compose|cluster) runs RabbitMQ as compose services: it "
            "needs the compose engine (this run uses local); add --engine compose, start Docker",
        ),
        (
            ["down", "--engine", "local", "--volumes"],
            "scale.py: error: --volumes deletes the compose broker's data: it goes with --broker compose or cluster",
        ),
    ],
)
def test_bad_broker_arguments_exit_2_with_one_line(argv, line, capsys):
    assert usage_error(capsys, argv).startswith(line)


def test_a_clusters_nodes_from_its_own_status_and_in_the_header():
    """`rabbitmqctl cluster_status` read as the nodes' states (pure), and shown under the status header;
    the header shows a cluster's first URL and how many more."""
    from dts.engines.compose import nodes_of
    from dts.reports.status_report import NodeStatus

    status = {
        "disk_nodes": ["rabbit@rabbit-1", "rabbit@rabbit-2", "rabbit@rabbit-3"],
        "running_nodes": ["rabbit@rabbit-2", "rabbit@rabbit-1"],
        "alarms": [{"node": "rabbit@rabbit-2", "resource": "memory"}],
        "partitions": {"rabbit@rabbit-1": ["rabbit@rabbit-3"]},
    }
    assert nodes_of(status) == [
        NodeStatus("rabbit@rabbit-1", "running", (), ("rabbit@rabbit-3",)),
        NodeStatus("rabbit@rabbit-2", "running", ("memory",)),
        NodeStatus("rabbit@rabbit-3", "NOT RUNNING"),
    ]
    url = "amqp://u:***@h:5681/v;amqp://u:***@h:5682/v;amqp://u:***@h:5683/v"
    lines = render_status(StatusReport("compose", (), broker=url, nodes=tuple(nodes_of(status))))
    assert lines[0] == "engine: compose   broker: amqp://u:***@h:5681/v (+2 failover nodes) (ok)"
    assert lines[1:3] == [  # one line, wrapped at 88 under its first node
        "nodes: rabbit@rabbit-1 running (partitioned from rabbit@rabbit-3), rabbit@rabbit-2",
        "       running (alarm memory), rabbit@rabbit-3 NOT RUNNING",
    ]
    assert render_status(StatusReport("local", (), broker="amqp://u:***@h:5672/v"))[1].startswith("pool ")
