"""Result files: named by kind and UTC time, written atomically, with the keys docs/reference/result-files.md lists."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dts.errors import CliError
from dts.results import default_name, output_path, save

# The schema (docs/reference/result-files.md): top-level keys and the keys of each nested record.
DISPATCH_KEYS = {"schema", "kind", "created_at", "config", "tasks", "summary", "repeat", "exit_code"}
DISPATCH_TASK_KEYS = {
    "task",
    "task_id",
    "pool",
    "result",
    "error",
    "isolation_breach",
    "unknown",
    "output",
    "ok",
    "state",
}
SUMMARY_KEYS = {
    "total_time",
    "sum_execution_time",
    "longest_execution_time",
    "overhead",
    "speedup",
    "total_retries",
    "max_backoff",
    "failed",
}
RESULT_KEYS = {
    "message",
    "task",
    "task_id",
    "queue",
    "worker",
    "retries",
    "retry_delays",
    "started_at",
    "finished_at",
    "execution_time",
}
LOAD_KEYS = {"schema", "kind", "created_at", "config", "load", "runs", "problems", "broker_lost", "pools_lost"}
SAMPLE_KEYS = {
    "task",
    "task_id",
    "sent_at",
    "received_at",
    "ok",
    "state",
    "worker",
    "started_at",
    "execution_time",
    "retries",
    "error",
}


def test_default_name_is_kind_and_utc_time_with_milliseconds():
    now = datetime(2026, 11, 25, 12, 1, 2, 345678, tzinfo=UTC)
    assert default_name("dispatch", now) == "dispatch-20261125T120102.345Z.json"


def test_output_path_defaults_to_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DTS_RESULTS_DIR", str(tmp_path / "r"))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    project = tmp_path / "project"
    assert output_path("load_test", None, False, project, now) == tmp_path / "r" / "load_test-20260102T030405.000Z.json"
    assert (tmp_path / "r").is_dir()
    assert output_path("dispatch", tmp_path / "x.json", False, project) == tmp_path / "x.json"
    assert output_path("dispatch", tmp_path / "x.json", True, project) is None


def test_output_path_defaults_to_the_projects_results_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DTS_RESULTS_DIR", raising=False)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        output_path("dispatch", None, False, tmp_path, now)
        == tmp_path / "results" / "dispatch-20260102T030405.000Z.json"
    )


def test_output_path_refuses_a_directory(tmp_path):
    with pytest.raises(CliError, match="is a directory"):
        output_path("dispatch", tmp_path, False, tmp_path)


def test_save_is_atomic_and_stamped(tmp_path):
    path = tmp_path / "run.json"
    save(path, "dispatch", {"exit_code": 0})
    doc = json.loads(path.read_text())
    assert doc["schema"] == 3 and doc["kind"] == "dispatch" and doc["exit_code"] == 0
    assert datetime.fromisoformat(doc["created_at"]).tzinfo is not None
    assert os.listdir(tmp_path) == ["run.json"]  # no temp file left behind
    save(None, "dispatch", {})  # --no-save: nothing written
    assert os.listdir(tmp_path) == ["run.json"]


@pytest.mark.integration
def test_dispatch_writes_a_result_file_with_the_documented_schema(config_path, clean_queues, capsys, tmp_path):
    import dispatch

    folder = Path(os.environ["DTS_RESULTS_DIR"])
    before = set(folder.glob("dispatch-*.json"))
    assert dispatch.main(["--config", str(config_path)]) == 0
    written = set(folder.glob("dispatch-*.json")) - before
    assert len(written) == 1
    (path,) = written
    assert capsys.readouterr().out.splitlines()[-1] == f"Result file: {path}"
    doc = json.loads(path.read_text())
    assert set(doc) == DISPATCH_KEYS and doc["kind"] == "dispatch" and doc["schema"] == 3
    assert [t["task"] for t in doc["tasks"]] == ["task_a", "task_b"]
    for task in doc["tasks"]:
        assert set(task) == DISPATCH_TASK_KEYS and task["ok"] is True
        assert set(task["result"]) == RESULT_KEYS
    assert set(doc["summary"]) == SUMMARY_KEYS and doc["exit_code"] == 0

    out = tmp_path / "chosen.json"
    assert dispatch.main(["--config", str(config_path), "--json", "--output", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == json.loads(out.read_text())["tasks"]
    count = len(list(folder.glob("*.json")))
    assert dispatch.main(["--config", str(config_path), "--no-save"]) == 0
    assert len(list(folder.glob("*.json"))) == count
    assert "Result file" not in capsys.readouterr().out


@pytest.mark.integration
def test_load_test_writes_a_result_file_with_the_documented_schema(config_path, workers, clean_queues, capsys):
    import load_test

    folder = Path(os.environ["DTS_RESULTS_DIR"])
    before = set(folder.glob("load_test-*.json"))
    assert load_test.main(["--config", str(config_path), "--tasks", "3"]) == 0
    (path,) = set(folder.glob("load_test-*.json")) - before
    assert capsys.readouterr().out.splitlines()[-1] == f"Result file: {path}"
    doc = json.loads(path.read_text())
    assert set(doc) == LOAD_KEYS and doc["kind"] == "load_test" and doc["problems"] == []
    (run,) = doc["runs"]
    assert run["size"] is None and run["report"]["completed"] == 6
    assert len(run["samples"]) == 6 and all(set(s) == SAMPLE_KEYS and s["ok"] for s in run["samples"])


def test_two_apps_keep_their_own_settings(tmp_path):
    """An app made from settings runs its tasks with those settings, never another app's (Celery shares
    decorated tasks between apps unless told not to)."""
    from helpers import write_config

    from dts.app import make_app, task_name
    from dts.config import load_settings

    first = make_app(load_settings(write_config(tmp_path / "one.yml", duration_a="0.5")))
    second = make_app(load_settings(write_config(tmp_path / "two.yml", duration_a="0.7")))
    for app, expected in ((first, "one.yml"), (second, "two.yml")):
        run = app.tasks[task_name("task_a")].run
        assert run.__closure__ and any(
            getattr(cell.cell_contents, "path", None) == tmp_path / expected for cell in run.__closure__
        ), expected
