"""Structured logs: LOG_FORMAT=json makes workers and CLIs write one JSON object per line, with the task
fields; text stays as it was. Unit tests of the formatter, then a real worker (local engine, own vhost)
and real CLIs read back line by line. The container twin is in test_docker.py."""

from __future__ import annotations

import logging

import pytest
from helpers import CHECKOUT, IDLE_BROKER_URL, app_for, fresh_vhost, json_lines, run_cli, vhost_url, write_config

from dts.errors import CliError, ExitCode
from dts.logs import FIELDS, TEXT_FORMAT, formatter, log_format

LOGS_VHOST = f"dts-test-logs-{CHECKOUT}"
TASK_FIELDS = ("task_id", "task_name", "queue", "worker", "attempt", "duration", "outcome")


def record(name: str = "dts.test", msg: str = "something happened", level: int = logging.INFO, **extra):
    rec = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


# -- unit


def test_json_formatter_writes_one_object_with_the_field_names():
    fields = {
        "task_id": "abc",
        "task_name": "celery_app.task_a",
        "queue": "queue_a",
        "worker": "worker-a@h",
        "attempt": 2,
        "duration": 0.1,
        "outcome": "success",
    }
    line = formatter("json").format(record(msg="task succeeded", **fields))
    assert "\n" not in line
    [parsed] = json_lines(line)
    assert list(parsed) == list(FIELDS)  # exactly the documented fields, the timestamp first
    assert parsed | {"timestamp": None} == {
        "timestamp": None,
        "level": "INFO",
        "event": "task succeeded",
        "logger": "dts.test",
        **fields,
    }


def test_json_formatter_keeps_a_traceback_on_the_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec = record(level=logging.ERROR, exc_info=sys.exc_info())
    [parsed] = json_lines(formatter("json").format(rec))
    assert parsed["level"] == "ERROR" and "ValueError: boom" in parsed["exc_info"]


def test_text_format_is_unchanged():
    rec = record(msg="broker %s", task_id="abc")
    rec.args = ("amqp://x",)
    assert TEXT_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    line = formatter("text").format(rec)
    assert line.endswith(" INFO dts.test: broker amqp://x") and "{" not in line


def test_log_format_comes_from_the_environment():
    assert log_format({}) == "text"
    assert log_format({"LOG_FORMAT": "JSON "}) == "json"
    assert log_format({"LOG_FORMAT": "text"}) == "text"
    with pytest.raises(CliError) as err:
        log_format({"LOG_FORMAT": "xml"})
    assert err.value.exit_code == ExitCode.USAGE and "text or json" in str(err.value)


def test_json_workers_run_quiet_and_text_workers_as_before(config_path):
    from dts.config import load_settings
    from dts.naming import worker_argv

    pool = load_settings(config_path).pools["worker-a"]
    text = worker_argv(pool)
    assert "-q" not in text
    assert worker_argv(pool, log_format="json") == [*text[:3], "-q", *text[3:]]  # no banner: it is printed


# -- CLIs


def test_cli_diagnostics_and_error_are_json_lines(rabbitmq, config_path):
    """dispatch.py with no consumer (the idle vhost): -v diagnostics, then the one error line, all JSON."""
    proc = run_cli(
        "dispatch.py",
        "--config",
        str(config_path),
        "-v",
        "--no-save",
        env={"LOG_FORMAT": "json", "BROKER_URL": IDLE_BROKER_URL},
    )
    assert proc.returncode == ExitCode.NO_CONSUMER, proc.stderr
    records = json_lines(proc.stderr)
    assert any(r["level"] == "INFO" and r["event"].startswith("broker amqp://") for r in records), proc.stderr
    last = records[-1]
    assert (
        last["level"] == "ERROR" and last["event"].startswith("dispatch.py: error: ") and "no consumer" in last["event"]
    )
    assert (last["prog"], last["exit_code"]) == ("dispatch.py", ExitCode.NO_CONSUMER)


def test_cli_usage_error_is_a_json_line_and_text_stays_one_plain_line():
    proc = run_cli("scale.py", "set", "worker-a", "many", env={"LOG_FORMAT": "json"})
    assert proc.returncode == ExitCode.USAGE
    [err] = json_lines(proc.stderr)
    assert err["event"].startswith("scale.py set: error: argument COUNT") and err["exit_code"] == ExitCode.USAGE
    plain = run_cli("scale.py", "set", "worker-a", "many", env={"LOG_FORMAT": "text"})
    assert plain.returncode == ExitCode.USAGE
    assert plain.stderr == err["event"] + "\n"


def test_an_unknown_log_format_is_a_usage_error():
    proc = run_cli("dispatch.py", "--no-save", env={"LOG_FORMAT": "xml"})
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr == "dispatch.py: error: LOG_FORMAT='xml' is not a log format: use text or json\n"
    worker = run_cli("-m", "dts", "worker", "worker-a", env={"LOG_FORMAT": "xml"})
    assert worker.returncode == ExitCode.USAGE and "LOG_FORMAT='xml'" in worker.stderr


# -- a real worker


@pytest.fixture(scope="module")
def json_worker(rabbitmq, tmp_path_factory):
    """A worker-a (local engine, LOG_FORMAT=json, own vhost) runs a task, a task retried once and a task
    that fails; then it is stopped, so its whole log is written (shutdown notice included)."""
    import os

    from dts.config import load_settings
    from dts.engines.local import LocalEngine

    fresh_vhost(LOGS_VHOST, "guest")
    path = write_config(tmp_path_factory.mktemp("logs") / "logs.yml", replicas="1", max_retries="1")
    settings = load_settings(path).with_broker_url(vhost_url(LOGS_VHOST))
    app = app_for(settings)
    engine = LocalEngine(settings, app, run_dir=tmp_path_factory.mktemp("run"), env=dict(os.environ, LOG_FORMAT="json"))
    try:
        engine.resize({"worker-a": 1, "worker-b": 0})
        plain = app.send_task("celery_app.task_a")
        retried = app.send_task("celery_app.task_a", kwargs={"fail_times": 1})
        failed = app.send_task("celery_app.task_a", kwargs={"fail_times": 5})
        results = {"plain": plain.get(timeout=60), "retried": retried.get(timeout=60)}
        with pytest.raises(Exception, match="gave up after 2 attempts"):  # the task's error, re-raised
            failed.get(timeout=60)
    finally:
        engine.stop()
        app.close()
    [logfile] = engine.run_dir.glob("worker-a-*.log")
    text = logfile.read_text()
    yield {"text": text, "ids": {"plain": plain.id, "retried": retried.id, "failed": failed.id}, "results": results}


def lifecycle(records: list[dict], task_id: str) -> list[dict]:
    return [r for r in records if r["logger"] == "dts.task" and r.get("task_id") == task_id]


def test_every_line_of_a_json_worker_log_is_json(json_worker):
    records = json_lines(json_worker["text"])
    events = [r["event"] for r in records]
    assert any(e.endswith(" ready.") for e in events), events  # Celery's own records are JSON too
    assert "worker: Warm shutdown (MainProcess)" in events  # and what it prints from its signal handlers
    assert all(r["worker"].startswith("worker-a@") for r in records if "worker" in r)


def test_task_records_carry_the_task_fields(json_worker):
    records = json_lines(json_worker["text"])
    ids, results = json_worker["ids"], json_worker["results"]
    node = results["plain"]["worker"]

    plain = lifecycle(records, ids["plain"])
    assert [(r["event"], r["outcome"], r["attempt"]) for r in plain] == [
        ("task started", "started", 1),
        ("task succeeded", "success", 1),
    ]
    retried = lifecycle(records, ids["retried"])
    assert [(r["event"], r["outcome"], r["attempt"]) for r in retried] == [
        ("task started", "started", 1),
        ("task retry", "retry", 1),
        ("task started", "started", 2),
        ("task succeeded", "success", 2),
    ]
    assert retried[1]["delay"] == results["retried"]["retry_delays"][0]
    failed = lifecycle(records, ids["failed"])
    assert [(r["event"], r["outcome"], r["level"]) for r in failed][-1] == ("task failed", "failure", "ERROR")
    assert failed[-1]["attempt"] == 2 and "gave up after 2 attempts" in failed[-1]["error"]

    for r in plain + retried + failed:
        assert (r["task_name"], r["queue"], r["worker"]) == ("celery_app.task_a", "queue_a", node), r
        if r["outcome"] != "started":
            assert set(TASK_FIELDS) <= r.keys() and 0 < r["duration"] < 30, r
    # Celery's own records inside a task carry the task's id too
    assert any("succeeded in" in r["event"] and r.get("task_id") == ids["plain"] for r in records)
