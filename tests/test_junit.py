"""`--junit FILE`: the dispatch's and the load test's reports as JUnit XML, read back by a real consumer
(junitparser, as CI plugins parse it) and checked against the schema Jenkins reads them with — from report
objects (every state: succeeded, failed, unknown, a breach, a task there twice; a bounded load of 1,000+
failures) and from real runs against the session's workers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import IN_CI, run_cli
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


# Jenkins' JUnit schema (junit-10.xsd of its xunit plugin): pytest's sdist carries it; fetched with pip,
# never committed here. Its sha256 in pytest 9.2.0 (requirements-dev.txt pins pytest):
JUNIT_XSD = "testing/example_scripts/junit-10.xsd"
JUNIT_XSD_SHA256 = "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6"


def fetch_junit_xsd(folder: Path) -> Path:
    """junit-10.xsd from pytest's sdist (pip download), checked against its hash; cached in `folder`."""
    target = folder / "junit-10.xsd"
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == JUNIT_XSD_SHA256:
        return target
    version = pytest.__version__
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", f"pytest=={version}"]
    subprocess.run([*pip, "-d", str(folder)], check=True, capture_output=True, timeout=300)
    with tarfile.open(folder / f"pytest-{version}.tar.gz") as sdist:
        data = sdist.extractfile(f"pytest-{version}/{JUNIT_XSD}").read()
    assert hashlib.sha256(data).hexdigest() == JUNIT_XSD_SHA256, "pytest's junit-10.xsd changed: review, then pin"
    target.write_bytes(data)
    return target


@pytest.fixture(scope="session")
def junit_schema():
    """Jenkins' JUnit schema as an xmlschema validator (skipped locally, failed under CI=true, if unreachable)."""
    import xmlschema

    folder = Path.home() / ".cache" / "dts"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return xmlschema.XMLSchema(str(fetch_junit_xsd(folder)))
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and Jenkins' JUnit schema could not be fetched: {exc}")
        pytest.skip(f"Jenkins' JUnit schema could not be fetched: {exc}")


def suite_of(text: str, tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, text)
    xml = JUnitXml.fromfile(str(path))
    return xml if xml._tag == "testsuite" else next(iter(xml))


def test_a_testcase_per_task_with_its_state_pool_and_time(tmp_path, junit_schema):
    junit_schema.validate(dispatch_junit(report_of(OUTCOMES)))
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


def test_a_command_tasks_output_is_in_system_out_and_system_err(tmp_path, junit_schema):
    ran = result("board_smoke", "worker-c@h", "queue_c", 0.3)
    ran["value"] = {"exit_code": 0, "stdout": "3 passed\n", "stderr": "warning: slow board\n"}
    text = dispatch_junit(report_of([success("board_smoke", "id-s", "worker-c", ran)]))
    junit_schema.validate(text)
    (case,) = suite_of(text, tmp_path)
    assert case.system_out.endswith("3 passed\n") and case.system_err == "warning: slow board\n"


PYTEST_REPORT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_board" name="test_boots" time="0.012"/>
<testcase classname="tests.test_board" name="test_uart" time="1,5"><failure message="no banner">trace</failure>
<system-out>uart log</system-out></testcase>
<testcase classname="tests.test_board" name="test_wifi" time="0"><skipped message="no antenna"/></testcase>
</testsuite></testsuites>"""


@pytest.mark.parametrize(
    ("report", "merged", "said"),
    [
        ({"format": "junit", "text": PYTEST_REPORT, "note": None}, 3, "report: 3 testcase(s) merged"),
        ({"format": "junit", "text": PYTEST_REPORT[:300], "note": "cut at 300 of 600 bytes"}, 0,
         "report: not merged, not XML (unclosed token: line 4, column 20) (cut at 300 of 600 bytes)"),
        ({"format": "junit", "text": None, "note": "the command wrote no report"}, 0,
         "report: none (the command wrote no report)"),
    ],
)  # fmt: skip
def test_a_command_tasks_report_joins_the_suite_as_its_own_testcases(tmp_path, junit_schema, report, merged, said):
    output = {"exit_code": 1, "stdout": "", "stderr": "1 failed\n", "report": report}  # a failed command's
    failed = TaskOutcome("board_smoke", "id-s", "worker-c", error="exit code 1: 1 failed; not retried", output=output)
    text = dispatch_junit(report_of([failed]))
    junit_schema.validate(text)
    suite = suite_of(text, tmp_path)
    assert suite.tests == 1 + merged and suite.failures == 1 + (merged and 1) and suite.skipped == (merged and 1)
    own, *cases = list(suite)
    assert own.name == "board_smoke" and said in own.system_out and own.system_err == "1 failed\n"
    assert (
        [(c.name, c.classname, c.time) for c in cases]
        == [
            ("board_smoke: test_boots", "tests.test_board", 0.012),
            ("board_smoke: test_uart", "tests.test_board", 0.0),  # a time that is no number: 0
            ("board_smoke: test_wifi", "tests.test_board", 0.0),
        ][:merged]
    )
    if merged:
        assert cases[0].is_passed and cases[1].result[0].message == "no banner" and cases[2].is_skipped
        assert cases[1].system_out == "uart log"


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
def test_a_real_dispatch_writes_the_junit_file(settings, workers, config_path, tmp_path, junit_schema):
    path = tmp_path / "junit" / "dispatch.xml"
    ok = run_cli("dispatch.py", "--config", str(config_path), "--no-save", "-q", "--junit", str(path))
    assert ok.returncode == 0, ok.stderr
    junit_schema.validate(str(path))
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


# --------------------------------------------------------------------------- the load test's file


def load_report_of(samples, problems=()):
    from helpers import ROOT

    from dts.config import load_settings
    from dts.reports.load_report import LoadRun, LoadSpec, LoadTestReport, summarise_load
    from dts.runs.samples import SampleTable

    table = SampleTable.of(samples)
    report = summarise_load(load_settings(ROOT / "test-config.yml"), table, {"worker-a": 1, "worker-b": 1}, 2.0)
    return LoadTestReport("c.yml", LoadSpec(1, 0.5, None, None), (LoadRun(None, report, table),), problems)


def done(task: str, n: int):
    from dts.runs.samples import Sample

    result = {"worker": f"{task}@h", "started_at": "2026-01-01T00:00:00+00:00", "execution_time": 0.1, "retries": 0}
    return Sample(task, f"{task}-{n}", 0.0, received_at=0.2, result=result)


def test_a_load_tests_file_is_bounded_an_aggregate_per_type_and_a_case_per_failed_task(tmp_path, junit_schema):
    from dts.reports.junit import MAX_FAILED_CASES, load_junit
    from dts.runs.samples import Sample

    failed = [Sample("task_a", f"lost-{n}", 0.0, error="TransientError: boom") for n in range(MAX_FAILED_CASES + 5)]
    unknown = [Sample("task_b", "gone-1", 0.0, unknown=True, error="no result within 5s")]
    report = load_report_of([*(done("task_b", n) for n in range(3)), *failed, *unknown], ("throughput 1.5 < 2",))
    path = tmp_path / "load.xml"
    write_junit(path, load_junit(report, hostname="h"))
    junit_schema.validate(str(path))
    (suite,) = JUnitXml.fromfile(str(path))
    cases = list(suite)
    assert len(cases) == 2 + MAX_FAILED_CASES + 1 + 1  # aggregates, failed (bounded), "more", thresholds
    by_name = {case.name: case for case in cases}
    assert by_name[f"task_a: {MAX_FAILED_CASES + 5} tasks"].classname == "worker-a"
    assert (
        f"{MAX_FAILED_CASES + 5} of {MAX_FAILED_CASES + 5} task_a tasks"
        in by_name[f"task_a: {MAX_FAILED_CASES + 5} tasks"].result[0].message
    )
    assert "6 more tasks" in by_name["more failed tasks"].result[0].message  # 1,005 + 1 unknown, 1,000 shown
    assert by_name["thresholds"].result[0].type == "threshold"
    assert sum(1 for c in cases if c.name.startswith("task_a [lost-")) == MAX_FAILED_CASES
    # every case fails: task_b's aggregate too (gone-1 did not succeed), though gone-1 is past the bound
    assert (suite.tests, suite.failures, suite.errors) == (len(cases), len(cases), 0)
    assert len(path.read_bytes()) < 400_000  # bounded: no output for the successes


@pytest.mark.integration
def test_a_real_load_test_writes_the_junit_file(settings, workers, config_path, tmp_path, clean_queues, junit_schema):
    path = tmp_path / "load.xml"
    proc = run_cli("load_test.py", "--config", str(config_path), "--tasks", "3", "--duration-a", "0", "--duration-b", "0",
                   "--no-save", "--junit", str(path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    junit_schema.validate(str(path))
    (suite,) = JUnitXml.fromfile(str(path))
    assert sorted((c.name, c.classname, c.is_passed) for c in suite) == [
        ("task_a: 3 tasks", "worker-a", True),
        ("task_b: 3 tasks", "worker-b", True),
    ]
