"""JUnit XML, the report every CI system reads: one <testsuite> per run, one <testcase> per task.

    text = dispatch_junit(report, hostname="vm-1", now=datetime.now(UTC))   # pure: the document, as text
    text = load_junit(load_report)               # a load test: bounded, an aggregate testcase per task type (any tasks)
    write_junit(path, text)                                                 # written whole, then renamed

What CI systems do with it decides its shape: GitLab shows a testcase's `classname` as its suite and keeps
only the first of two testcases with one name, so every name is unique (the task's, then its id when a task
is there twice) and `classname` is the pool; `time` is the task's execution time. A task that failed is a
<failure> with its reason and the attempts it took; a task with no result is an <error> (unknown, and why).
The task id, queue, worker and retries are the testcase's own lines in <system-out>, where GitLab and
Jenkins show them, followed by a command task's output (its last 4 KB; stderr's in <system-err>). A command
task's own JUnit report (`report: junit`, e.g. pytest's) has its testcases merged into the suite, each named
`<task>: <its name>` with its own classname. The file never decides the job's status: the command's exit
code does.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from dts.files import write_atomic
from dts.reports.dispatch_report import DispatchReport, TaskOutcome
from dts.reports.load_report import LoadReport, LoadRun, LoadTestReport, PoolLoad, TaskLoad

MAX_MESSAGE = 500  # characters of a failure's message attribute (the element's text has the whole reason)
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot carry


def clean(text: str) -> str:
    """`text` as XML can carry it: control characters (but tab and newlines) become U+FFFD."""
    return NOT_XML.sub("\ufffd", text)


def _seconds(value: float) -> str:
    """A duration as Jenkins' schema takes it: at most three decimals, no exponent."""
    return f"{max(value, 0.0):.3f}"


def unique_names(outcomes: tuple[TaskOutcome, ...] | list[TaskOutcome]) -> list[str]:
    """Each outcome's testcase name: its task's, or `task [task id]` when the task is there more than once."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.task] = counts.get(o.task, 0) + 1
    return [o.task if counts[o.task] == 1 else f"{o.task} [{o.task_id}]" for o in outcomes]


def _details(o: TaskOutcome) -> str:
    """The testcase's own lines: the task id, where it ran (what its result says), retries, state."""
    result = o.result or {}
    lines = [f"task_id: {o.task_id}", f"pool: {o.pool}"]
    lines += [f"{key}: {result[key]}" for key in ("queue", "worker") if result.get(key)]
    lines += [f"retries: {o.retries}", f"state: {o.state}"]
    if o.ok:
        lines.append(f"result: {result.get('message')}")
    return "\n".join(lines) + "\n"


MAX_REPORT_CASES = 5000  # of one task's report file merged into the run's file
REPORT_CHILDREN = ("skipped", "error", "failure", "system-out", "system-err")  # what a merged testcase keeps
MAX_REPORT_TEXT = 64 * 1024  # characters of one such element's text


def _report_cases(suite: ET.Element, report: dict, label: str) -> str:
    """The testcases of a command task's JUnit report (`report: junit`) added to the run's suite, each named
    `<task>: <its name>` (unique per task) with its own classname; returns the line the task's own
    testcase says about it."""
    note = f" ({report['note']})" if report.get("note") else ""
    if report.get("text") is None:
        return f"report: none{note}"
    try:
        root = ET.fromstring(report["text"])
    except ET.ParseError as exc:
        return f"report: not merged, not XML ({exc}){note}"
    cases = list(root.iter("testcase"))
    for case in cases[:MAX_REPORT_CASES]:
        name = f"{label}: {case.get('name') or '?'}"
        merged = ET.SubElement(
            suite,
            "testcase",
            name=clean(name),
            classname=clean(case.get("classname") or label),
            time=_seconds(_float(case.get("time"))),
        )
        for child in case:
            if child.tag in REPORT_CHILDREN:
                attrs = {k: clean(v)[:MAX_MESSAGE] for k, v in child.attrib.items() if k in ("message", "type")}
                ET.SubElement(merged, child.tag, attrs).text = clean(child.text or "")[:MAX_REPORT_TEXT]
    more = f", {len(cases) - MAX_REPORT_CASES} more not merged" if len(cases) > MAX_REPORT_CASES else ""
    return f"report: {len(cases)} testcase(s) merged{more}{note}"


def _float(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def _testcase(suite: ET.Element, o: TaskOutcome, name: str) -> None:
    time = (o.result or {}).get("execution_time", 0.0)
    case = ET.SubElement(suite, "testcase", name=name, classname=o.pool, time=_seconds(time))
    if o.unknown:
        reason = clean(o.error or "no result")
        ET.SubElement(case, "error", message=reason[:MAX_MESSAGE], type="unknown").text = reason
    elif not o.ok:
        reason = clean(o.error or o.isolation_breach or "failed")
        kind = "IsolationBreach" if o.isolation_breach and not o.error else reason.split(":", 1)[0]
        failure = ET.SubElement(case, "failure", message=reason[:MAX_MESSAGE], type=kind[:100])
        failure.text = f"{reason}\n(attempts: {o.retries + 1})"
    value = (o.result or {}).get("value") if o.result else o.output
    output = value if isinstance(value, dict) and "exit_code" in value else {}  # a command task's tails
    merged = _report_cases(suite, output["report"], name) + "\n" if output.get("report") else ""
    ET.SubElement(case, "system-out").text = clean(_details(o) + merged + (output.get("stdout") or ""))
    if output.get("stderr"):
        ET.SubElement(case, "system-err").text = clean(output["stderr"])


def dispatch_junit(report: DispatchReport, hostname: str | None = None, now: datetime | None = None) -> str:
    """The dispatch's report as one <testsuite name="dispatch">, a <testcase> per task (pure)."""
    outcomes = report.outcomes
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    suite = ET.Element(
        "testsuite",
        name=f"dispatch: {report.config_name}",
        tests="0",  # counted below, with the testcases of the tasks' report files
        failures="0",
        errors="0",
        skipped="0",
        time=_seconds(report.summary.total_time),
        timestamp=stamp.isoformat(),
        hostname=hostname or socket.gethostname(),
    )
    for o, name in zip(outcomes, unique_names(outcomes), strict=True):
        _testcase(suite, o, name)
    cases = suite.findall("testcase")
    for key, tag in (("tests", None), ("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(key, str(sum(1 for c in cases if tag is None or c.find(tag) is not None)))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: Path, text: str) -> None:
    """The JUnit file, written whole (a temp file renamed into place)."""
    write_atomic(path, text)


MAX_FAILED_CASES = 1000  # a load test's file: one testcase per failed task up to this many, then one that counts


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _task_type_case(suite: ET.Element, task: str, load: TaskLoad, pool: PoolLoad | None) -> None:
    """A task type's aggregate testcase: failed when any of its tasks did not succeed (the reasons counted)."""
    case = ET.SubElement(
        suite, "testcase", name=f"{task}: {load.tasks} tasks", classname=load.pool, time=_seconds(load.work)
    )
    bad = load.failed + load.unknown
    if bad:
        why = ", ".join(f"{reason} {n}" for reason, n in load.failures.items())
        message = clean(f"{bad} of {load.tasks} {task} tasks did not succeed ({why})")
        ET.SubElement(case, "failure", message=message[:MAX_MESSAGE], type="failed").text = message
    slots = (
        "-"
        if pool is None
        else f"{pool.slots}" + (f" (at most {pool.slots_max})" if pool.slots_max > pool.slots else "")
    )
    ET.SubElement(case, "system-out").text = (
        f"tasks: {load.tasks}\ncompleted: {load.completed}\npool: {load.pool}\nslots: {slots}\n"
        f"work: {load.work:.3f}s\nqueue wait p95: {_ms(load.queue_wait.p95)}\nexecution p95: {_ms(load.execution.p95)}\n"
    )


def _failed_task_cases(suite: ET.Element, r: LoadReport) -> None:
    """A testcase per task that did not succeed (at most MAX_FAILED_CASES, then one that counts the rest)."""
    for f in r.failures[:MAX_FAILED_CASES]:
        case = ET.SubElement(
            suite,
            "testcase",
            name=f"{f['task']} [{f['task_id']}]",
            classname=r.task_types[f["task"]].pool if f["task"] in r.task_types else f["task"],
            time=_seconds(0),
        )
        reason = clean(f["error"] or f["state"])
        tag, kind = ("error", "unknown") if f["state"] == "unknown" else ("failure", reason.split(":", 1)[0][:100])
        ET.SubElement(case, tag, message=reason[:MAX_MESSAGE], type=kind).text = reason
    if len(r.failures) > MAX_FAILED_CASES:
        more = len(r.failures) - MAX_FAILED_CASES
        case = ET.SubElement(suite, "testcase", name="more failed tasks", classname="load-test", time=_seconds(0))
        ET.SubElement(
            case, "failure", message=f"{more} more tasks did not succeed (ids in the result file)", type="failed"
        )


def _load_suite(parent: ET.Element, run: LoadRun, name: str, problems: tuple[str, ...], stamp: str, host: str) -> None:
    """One load run: an aggregate testcase per task type, one per failed task (bounded), the thresholds."""
    r = run.report
    suite = ET.SubElement(
        parent,
        "testsuite",
        name=name,
        tests="0",
        failures="0",
        errors="0",
        skipped="0",
        time=_seconds(r.total_time),
        timestamp=stamp,
        hostname=host,
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("throughput", f"{r.throughput or 0:.1f} tasks/s"),
        ("latency_p50", _ms(r.latency.p50)),
        ("latency_p95", _ms(r.latency.p95)),
        ("latency_p99", _ms(r.latency.p99)),
        ("efficiency", "-" if r.efficiency is None else f"{r.efficiency:.3f}"),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for task, load in r.task_types.items():
        _task_type_case(suite, task, load, r.pools.get(load.pool))
    _failed_task_cases(suite, r)
    if problems:
        case = ET.SubElement(suite, "testcase", name="thresholds", classname="load-test", time=_seconds(0))
        text = clean("; ".join(problems))
        ET.SubElement(case, "failure", message=text[:MAX_MESSAGE], type="threshold").text = text
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))


def load_junit(report: LoadTestReport, hostname: str | None = None, now: datetime | None = None) -> str:
    """A load test as JUnit XML (pure): one <testsuite> per run (a sweep: one per pool size, in a
    <testsuites>), bounded whatever the load: an aggregate testcase per task type (no output of the
    successes), one per failed task up to MAX_FAILED_CASES, one for the thresholds missed."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()
    host = hostname or socket.gethostname()
    root = ET.Element("testsuites", name="load-test")
    for run in report.runs:
        name = "load-test" + (f": {run.size} worker(s) per pool" if run.size is not None else "")
        _load_suite(root, run, name, report.problems if run is report.runs[-1] else (), stamp, host)
    suites = root.findall("testsuite")
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key)) for s in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
