"""`--junit FILE`: the dispatch's report as JUnit XML, read back by a real consumer (junitparser, as CI
plugins parse it) — from report objects (every state: succeeded, failed, unknown, a breach, a task there
twice) and from real dispatches against the session's workers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from helpers import run_cli
from junitparser import Error, Failure, JUnitXml

from dts.reports.dispatch_report import DispatchReport, TaskOutcome, success, summarise_dispatch
from dts.reports.junit import clean, dispatch_junit, unique_names, write_junit


def result(task: str, worker: str, queue: str, seconds: float, retries: int = 0) -> dict:
    return {"message": f"Hello from {task}", "task": task, "queue": queue, "worker": worker,
            "retries": retries, "retry_delays": [], "execution_time": seconds}  # fmt: skip


def report_of(outcomes: list[TaskOutcome]) -> DispatchReport:
    return DispatchReport("lab", "/lab/test-config.yml", tuple(outcomes), summarise_dispatch(outcomes, 1.5), None, 1)


OUTCOMES = [
    success("task_a", "id-a", "worker-a", result("task_a", "worker-a@h-1", "queue_a", 0.25, retries=2)),
    TaskOutcome("task_b", "id-b", "worker-b", error="TransientError: boom; gave up after 4 attempts (max_retries=3)"),
    TaskOutcome("task_c", "id-c", "worker-c", error="no result within 30s: still queued or running", unknown=True),
    success("task_d", "id-d", "worker-d", result("task_d", "worker-a@h-1", "queue_d", 0.5)),  # ran on worker-a
]


def suite_of(text: str, tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, text)
    xml = JUnitXml.fromfile(str(path))
    return xml if xml._tag == "testsuite" else next(iter(xml))


def test_a_testcase_per_task_with_its_state_pool_and_time(tmp_path):
    suite = suite_of(
        dispatch_junit(report_of(OUTCOMES), hostname="lab-host", now=datetime(2026, 1, 2, tzinfo=UTC)), tmp_path
    )
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 2, 1, 0)
    assert suite.name == "dispatch: lab" and suite.hostname == "lab-host" and suite.time == 1.5
    cases = {case.name: case for case in suite}
    assert [case.classname for case in suite] == ["worker-a", "worker-b", "worker-c", "worker-d"]
    assert cases["task_a"].is_passed and cases["task_a"].time == 0.25
    assert "retries: 2" in cases["task_a"].system_out and "worker: worker-a@h-1" in cases["task_a"].system_out
    (failed,) = cases["task_b"].result
    assert isinstance(failed, Failure) and failed.type == "TransientError" and "(attempts: 4)" in failed.text
    (lost,) = cases["task_c"].result
    assert isinstance(lost, Error) and lost.type == "unknown" and "still queued or running" in lost.message
    (breach,) = cases["task_d"].result
    assert (
        isinstance(breach, Failure)
        and breach.type == "IsolationBreach"
        and "expected a worker-d worker" in breach.message
    )


def test_names_are_unique_when_a_task_is_there_twice():
    twice = [OUTCOMES[0], success("task_a", "id-a2", "worker-a", result("task_a", "worker-a@h-2", "queue_a", 0.1))]
    assert unique_names(twice) == ["task_a [id-a]", "task_a [id-a2]"]
    assert unique_names(OUTCOMES) == ["task_a", "task_b", "task_c", "task_d"]


def test_control_characters_in_a_reason_do_not_break_the_xml(tmp_path):
    bad = TaskOutcome("task_b", "id-b", "worker-b", error="OSError: tty said \x1b[31mred\x00 and \x07")
    text = dispatch_junit(report_of([bad]))
    ET.fromstring(text.encode())  # parses
    assert clean("a\x00b\tc\nd") == "a\ufffdb\tc\nd"
    (case,) = suite_of(text, tmp_path)
    assert "\ufffd[31mred\ufffd" in case.result[0].message


@pytest.mark.integration
def test_a_real_dispatch_writes_the_junit_file(settings, workers, config_path, tmp_path):
    path = tmp_path / "junit" / "dispatch.xml"
    ok = run_cli("dispatch.py", "--config", str(config_path), "--no-save", "-q", "--junit", str(path))
    assert ok.returncode == 0, ok.stderr
    suite = suite_of(path.read_text(), tmp_path)
    assert {(c.name, c.classname, c.is_passed) for c in suite} == {
        ("task_a", "worker-a", True),
        ("task_b", "worker-b", True),
    }
    failed = run_cli(
        "dispatch.py", "--config", str(config_path), "--no-save", "-q", "--junit", str(path), "--fail-times", "9"
    )
    assert failed.returncode == 1  # the exit code says the job failed; the file says which tasks and why
    suite = suite_of(path.read_text(), tmp_path)
    assert suite.failures == 2 and all("gave up after" in case.result[0].message for case in suite)
