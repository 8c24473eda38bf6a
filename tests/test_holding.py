"""broker.consumer_timeout: how long a worker may hold a message, the warnings `up` and `health` give when a
queue's declared limits outlast it (dts.config.holding), the quorum consumers' own timeout and the value
the compose broker is given. Pure: the brokers' side is tests/test_consumer_timeout.py."""

from __future__ import annotations

import os
import textwrap

import pytest
from helpers import TEST_BROKER_URL, run_cli

from dts.app.conf import declared_queues
from dts.config import load_settings
from dts.config.holding import consumer_timeout_warnings, holds
from dts.errors import ConfigError


def config(tmp_path, broker: str = "", task_a: str = "", pool_a: str = "", retry: str = "max_retries: 3"):
    path = tmp_path / "cfg.yml"
    path.write_text(
        textwrap.dedent(f"""\
        broker: {{url: "{TEST_BROKER_URL}", {broker}}}
        pools:
          worker-a: {{queues: [queue_a], {pool_a}}}
          worker-b: {{queues: [queue_b]}}
        tasks:
          task_a: {{queue: queue_a, {task_a}}}
          task_b: {{queue: queue_b}}
        retry: {{{retry}}}
        """)
    )
    return path


def test_the_defaults_hold_a_message_for_the_backoff_only_and_warn_of_nothing(tmp_path):
    settings = load_settings(config(tmp_path))
    assert settings.broker.consumer_timeout == 1800
    assert [(h.queue, h.seconds) for h in holds(settings)] == [("queue_a", 30.0), ("queue_b", 30.0)]
    assert consumer_timeout_warnings(settings) == []


def test_a_time_limit_times_the_prefetch_plus_the_backoff_over_the_timeout_is_one_warning(tmp_path):
    settings = load_settings(config(tmp_path, task_a="time_limit: 1000", pool_a="prefetch_multiplier: 2"))
    (line,) = consumer_timeout_warnings(settings)  # 30 + 2 × 1000 > 1800; queue_b has no limit declared
    assert line.startswith("warning: queue_a's messages can stay unacknowledged 2030s")
    assert "(time_limit 1000s × prefetch 2 + backoff_max 30s)" in line
    assert "raise broker.consumer_timeout to 2030 or more" in line
    raised = load_settings(config(tmp_path, "consumer_timeout: 2030", "time_limit: 1000", "prefetch_multiplier: 2"))
    assert consumer_timeout_warnings(raised) == []


def test_a_long_backoff_warns_even_for_a_task_with_no_time_limit_unless_it_is_never_retried(tmp_path):
    settings = load_settings(config(tmp_path, retry="backoff_max: 3600"))
    assert [w.split("'")[0] for w in consumer_timeout_warnings(settings)] == ["warning: queue_a", "warning: queue_b"]
    assert "(backoff_max 3600s)" in consumer_timeout_warnings(settings)[0]
    assert consumer_timeout_warnings(load_settings(config(tmp_path, retry="backoff_max: 3600, max_retries: 0"))) == []


def test_a_queue_counts_a_time_limit_only_when_every_task_on_it_has_one(tmp_path):
    path = config(tmp_path, task_a="time_limit: 5000")
    assert [h.time_limit for h in holds(load_settings(path))] == [5000.0, 0.0]
    own = "  task_b: {queue: queue_b}\n  probe: {queue: queue_a, call: 'os:getpid'}"
    path.write_text(path.read_text().replace("  task_b: {queue: queue_b}", own))
    assert [h.time_limit for h in holds(load_settings(path))] == [0.0, 0.0]


def test_quorum_consumers_carry_the_timeout_and_classic_ones_nothing(tmp_path):
    quorum = load_settings(config(tmp_path, "queue_type: quorum, consumer_timeout: 7200"))
    assert {q.consumer_arguments["x-consumer-timeout"] for q in declared_queues(quorum)} == {7_200_000}
    classic = load_settings(config(tmp_path, "queue_type: classic, consumer_timeout: 7200"))
    assert {q.consumer_arguments for q in declared_queues(classic)} == {None}  # 4.3 refuses it on classic queues


@pytest.mark.parametrize("value", ["10", "0", "2592001", "soon"])
def test_a_consumer_timeout_out_of_range_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match=r"broker\.consumer_timeout"):
        load_settings(config(tmp_path, f"consumer_timeout: {value}"))


@pytest.mark.integration
def test_health_says_the_warning_on_stderr_and_keeps_its_exit_code(tmp_path):
    """`dts health` against the host broker with nothing running: the exit code is the health's (no
    consumer, 4), the warning one line on stderr before the report's own error."""
    path = config(tmp_path, "connect_timeout: 5", "time_limit: 3600")
    own = f"hold_{os.getpid()}"  # queues of this test's own: another module's workers serve queue_a on this vhost
    path.write_text(path.read_text().replace("queue_a", f"{own}_a").replace("queue_b", f"{own}_b"))
    proc = run_cli("-m", "dts", "health", "--config", str(path), "--engine", "local")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and f"{own}_a's messages can stay unacknowledged 3630s" in warnings[0], proc.stderr


@pytest.mark.integration
def test_up_says_the_warning_before_it_starts_the_pools(tmp_path):
    """`scale.py up` (no workers: replicas 0) warns on stderr and goes on: exit 0."""
    path = config(tmp_path, "connect_timeout: 5", "time_limit: 3600", "replicas: 0")
    path.write_text(
        path.read_text().replace("worker-b: {queues: [queue_b]}", "worker-b: {queues: [queue_b], replicas: 0}")
    )
    try:
        proc = run_cli("scale.py", "up", "--config", str(path), "--engine", "local")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "worker-a: 0 worker(s) up" in proc.stdout
        (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
        assert "queue_a's messages can stay unacknowledged 3630s" in warning
    finally:
        run_cli("scale.py", "down", "--config", str(path), "--engine", "local")
