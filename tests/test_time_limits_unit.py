"""Unit tests (no broker) of the per-task time limits: config validation, the Celery settings they become,
the soft-limit failure in run_task, the report line of a hard-limit failure, the execution-pool warning."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from billiard.exceptions import TimeLimitExceeded
from celery.exceptions import SoftTimeLimitExceeded
from helpers import ROOT

from dts.app.conf import celery_settings, time_limit_annotations
from dts.config import load_settings, parse_settings
from dts.errors import ConfigError
from dts.reports.dispatch_report import failure_reason
from dts.runtime import work

POOLS = "pools: {worker-a: {queues: [queue_a]}, worker-b: {queues: [queue_b]}}\n"


def settings_of(tmp_path: Path, tasks: str):
    path = tmp_path / "cfg.yml"
    path.write_text(textwrap.dedent(POOLS + tasks))
    return load_settings(path)


def error_of(doc: str) -> str:
    import yaml

    with pytest.raises(ConfigError) as err:
        parse_settings(yaml.safe_load(POOLS + doc), Path("cfg.yml"))
    return str(err.value)


def test_limits_default_to_none(tmp_path):
    s = settings_of(tmp_path, "")
    assert [(t.soft_time_limit, t.time_limit) for t in s.tasks.values()] == [(0.0, 0.0), (0.0, 0.0)]
    assert time_limit_annotations(s) == {}


def test_limits_are_read_per_task(tmp_path):
    s = settings_of(tmp_path, "tasks: {task_a: {soft_time_limit: 0.3, time_limit: 0.6}, task_b: {time_limit: 5}}")
    assert (s.tasks["task_a"].soft_time_limit, s.tasks["task_a"].time_limit) == (0.3, 0.6)
    assert (s.tasks["task_b"].soft_time_limit, s.tasks["task_b"].time_limit) == (0.0, 5.0)


def test_shipped_config_sets_five_minutes_soft_and_a_half_minute_more_hard():
    s = load_settings(ROOT / "test-config.yml")
    assert {(t.soft_time_limit, t.time_limit) for t in s.tasks.values()} == {(300.0, 330.0)}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            "tasks: {task_a: {soft_time_limit: 30, time_limit: 30}}",
            "tasks.task_a.time_limit must exceed tasks.task_a.soft_time_limit (30), or be 0 (none) (got 30.0)",
        ),
        (
            "tasks: {task_b: {soft_time_limit: 0.6, time_limit: 0.3}}",
            "tasks.task_b.time_limit must exceed tasks.task_b.soft_time_limit (0.6), or be 0 (none) (got 0.3)",
        ),
        ("tasks: {task_a: {soft_time_limit: -1}}", "tasks.task_a.soft_time_limit must be between 0 and 86400 (got -1)"),
        ("tasks: {task_a: {time_limit: 90000}}", "tasks.task_a.time_limit must be between 0 and 86400 (got 90000)"),
        ("tasks: {task_a: {time_limit: 5m}}", "tasks.task_a.time_limit must be a number (got '5m')"),
        ("tasks: {task_a: {soft_time_limit: .inf}}", "tasks.task_a.soft_time_limit must be a finite number (got inf)"),
        ("tasks: {task_a: {soft_time_limit: true}}", "tasks.task_a.soft_time_limit must be a number (got True)"),
        (
            "tasks: {task_a: {timeout: 5}}",
            "tasks.task_a.timeout is not a known key "
            "(known: duration, failure_rate, queue, retry, soft_time_limit, time_limit) (got 5)",
        ),
    ],
)
def test_bad_limits_are_one_line_naming_the_key(doc, expected):
    assert error_of(doc) == f"cfg.yml: {expected}"


def test_a_soft_limit_alone_or_a_hard_limit_alone_is_fine(tmp_path):
    s = settings_of(tmp_path, "tasks: {task_a: {soft_time_limit: 10}, task_b: {time_limit: 10}}")
    assert time_limit_annotations(s) == {
        "celery_app.task_a": {"soft_time_limit": 10.0},
        "celery_app.task_b": {"time_limit": 10.0},
    }


def test_celery_settings_carry_the_limits_and_ack_a_killed_task(tmp_path):
    s = settings_of(tmp_path, "tasks: {task_a: {soft_time_limit: 0.3, time_limit: 0.6}}")
    conf = celery_settings(s)
    assert conf["task_annotations"] == {"celery_app.task_a": {"soft_time_limit": 0.3, "time_limit": 0.6}}
    assert conf["task_acks_on_timeout"] is True  # False: requeued at the hard limit, killed again, forever
    assert "task_time_limit" not in conf and "task_soft_time_limit" not in conf  # per task, not for every task


def test_celery_applies_the_annotations_to_the_task(tmp_path):
    from celery import Celery

    app = Celery("limits-unit", set_as_current=False)
    app.conf.update(celery_settings(settings_of(tmp_path, "tasks: {task_b: {soft_time_limit: 1, time_limit: 2}}")))

    @app.task(name="celery_app.task_b", shared=False)  # not handed to the apps made after it
    def task_b():
        return None

    @app.task(name="celery_app.task_a", shared=False)
    def task_a():
        return None

    app.finalize()
    assert (app.tasks["celery_app.task_b"].soft_time_limit, app.tasks["celery_app.task_b"].time_limit) == (1.0, 2.0)
    assert (app.tasks["celery_app.task_a"].soft_time_limit, app.tasks["celery_app.task_a"].time_limit) == (None, None)


# --------------------------------------------------------------------------- run_task past the soft limit


def fake_task(soft: float | None, timelimit=None):
    def retry(**_):
        raise AssertionError("a time limit must not be retried")

    request = SimpleNamespace(retries=0, timelimit=timelimit, kwargs={}, delivery_info={}, id="t1", hostname="w@h")
    return SimpleNamespace(request=request, soft_time_limit=soft, retry=retry)


@pytest.mark.parametrize(("soft", "timelimit", "shown"), [(0.3, None, "0.3"), (300.0, (None, 2.5), "2.5")])
def test_past_the_soft_limit_run_task_fails_with_the_reason_and_does_not_retry(
    tmp_path, monkeypatch, soft, timelimit, shown
):
    def over_the_limit(*_args, **_kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(work, "simulate_work", over_the_limit)
    settings = settings_of(tmp_path, "retry: {max_retries: 3}")
    with pytest.raises(work.TimeLimitError) as err:
        work.run_task(fake_task(soft, timelimit), "task_a", settings, 1.0, None, 0, None)
    assert str(err.value).startswith(f"task_a exceeded soft time limit of {shown}s (stopped after ")
    assert str(err.value).endswith("; not retried")


def test_a_transient_error_is_still_retried(tmp_path, monkeypatch):
    def transient(*_args, **_kwargs):
        raise work.TransientError("flaky")

    monkeypatch.setattr(work, "simulate_work", transient)
    task = fake_task(None)
    task.retry = lambda **kw: RuntimeError(f"retry countdown={kw['countdown']}")
    with pytest.raises(RuntimeError, match="retry countdown="):
        work.run_task(task, "task_a", settings_of(tmp_path, ""), 0.0, None, 0, None)


# --------------------------------------------------------------------------- the report line of a hard limit


def test_hard_limit_failure_is_spelt_out_from_the_exception_and_from_its_json_form():
    exc = TimeLimitExceeded(0.6)
    line = "TimeLimitExceeded: task_b exceeded hard time limit of 0.6s; the worker killed its process; not retried"
    assert failure_reason("task_b", type(exc).__name__, exc.args, str(exc)) == line
    assert failure_reason("task_b", "TimeLimitExceeded", [0.6], "[0.6]") == line  # load test: the result's JSON
    assert failure_reason("task_b", "TimeLimitExceeded", [], "") == (
        "TimeLimitExceeded: task_b exceeded hard time limit; the worker killed its process; not retried"
    )
    assert failure_reason("task_a", "TransientError", ("boom",), "boom") == "TransientError: boom"


# --------------------------------------------------------------------------- execution pools that ignore limits


def test_threads_and_solo_workers_warn_about_the_limits_of_the_tasks_they_serve(tmp_path):
    s = settings_of(tmp_path, "tasks: {task_a: {soft_time_limit: 3, time_limit: 4}}")
    assert work.unenforced_time_limits(s, {"queue_a"}, "prefork") == []
    assert work.unenforced_time_limits(s, {"queue_b"}, "threads") == []  # task_b has no limits
    assert work.unenforced_time_limits(s, {"queue_a"}, "solo") == [
        "tasks.task_a: time limits (soft_time_limit 3s, time_limit 4s) are not enforced by the solo execution "
        "pool: Celery enforces them in prefork workers only"
    ]


@pytest.mark.parametrize(("pool", "warns"), [("prefork", False), ("threads", True), ("solo", True)])
def test_the_warning_is_logged_at_worker_start_from_the_pool_in_use(tmp_path, caplog, pool, warns):
    from celery import signals
    from celery.concurrency import get_implementation

    s = settings_of(tmp_path, "tasks: {task_a: {time_limit: 4}}")
    amqp = SimpleNamespace(queues=SimpleNamespace(consume_from={"queue_a": None}))
    worker = SimpleNamespace(pool_cls=get_implementation(pool), app=SimpleNamespace(amqp=amqp))
    receiver = work.connect_time_limit_check(lambda: s)
    try:
        with caplog.at_level(logging.WARNING, logger="dts.work"):
            signals.celeryd_after_setup.send(sender="worker-a@h", instance=worker, conf=None)
    finally:
        signals.celeryd_after_setup.disconnect(receiver)
    # celery_app's own receiver (the active settings) may be connected too, when a test imported celery_app
    messages = [r.getMessage() for r in caplog.records if r.name == "dts.work" and "time_limit 4s" in r.getMessage()]
    assert messages == (
        [
            f"tasks.task_a: time limits (soft_time_limit none, time_limit 4s) are not enforced by the "
            f"{pool} execution pool: Celery enforces them in prefork workers only"
        ]
        if warns
        else []
    )
