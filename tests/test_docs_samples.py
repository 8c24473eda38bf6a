"""The docs' sample outputs (docs/samples/, regenerated from a real run by `make docs-samples`) are what the
report code prints: each sample's JSON (the run's result file, or its --json) is rendered again with
today's code, and every line must be in the sample's text, in order. A changed header or line format
fails here until the samples are regenerated."""

from __future__ import annotations

import json
import re

import pytest
from helpers import ROOT

from dts.reports.console import table_lines
from dts.reports.dispatch_report import (
    DISPATCH_COLUMNS,
    DISPATCH_LAYOUT,
    DispatchReport,
    DispatchSummary,
    TaskOutcome,
    dispatch_rows,
    dispatch_totals,
)
from dts.reports.load_report import Distribution, LoadReport, PoolLoad, TaskLoad, render_load
from dts.reports.status_report import PoolStatus, QueueStatus, StatusReport, WorkerStatus, render_health, render_status

SAMPLES = ROOT / "docs" / "samples"
DISPATCH_SAMPLES = ("dispatch", "dispatch-retry", "dispatch-gave-up")


def sample(name: str) -> tuple[list[str], dict]:
    lines = (SAMPLES / f"{name}.txt").read_text().splitlines()
    return lines, json.loads((SAMPLES / f"{name}.json").read_text())


def in_order(expected: list[str], text: list[str]) -> None:
    """Every expected line is a line of the text, in the same order."""
    position = 0
    for line in expected:
        assert line in text[position:], f"not in the sample (after line {position}): {line!r}"
        position = text.index(line, position) + 1


def dispatch_report(doc: dict) -> DispatchReport:
    outcomes = tuple(TaskOutcome(**{k: v for k, v in t.items() if k not in ("ok", "state")}) for t in doc["tasks"])
    summary = DispatchSummary(**{**doc["summary"], "failed": tuple(doc["summary"]["failed"])})
    config = doc["config"]
    return DispatchReport(config["name"], config["path"], outcomes, summary, None, doc["exit_code"])


@pytest.mark.parametrize("name", DISPATCH_SAMPLES)
def test_dispatch_samples_are_what_the_report_prints(name):
    text, doc = sample(name)
    report = dispatch_report(doc)
    assert text[0].startswith("$ python dispatch.py")
    in_order(table_lines(DISPATCH_COLUMNS, dispatch_rows(report), **DISPATCH_LAYOUT) + dispatch_totals(report), text)
    assert f"Loaded config: {doc['config']['name']}" in text


def test_the_plain_dispatch_sample_has_the_challenges_lines():
    text, _ = sample("dispatch")
    for pattern in (
        r"Result from task_a: Hello from Task A",
        r"Task A execution time: \d+\.\d{3}s",
        r"Task A retries: 0",
        r"Result from task_b: Hello from Task B",
        r"Total dispatcher time: \d+\.\d{3}s \(concurrent execution\)",
        r"Sequential time would be: \d+\.\d{3}s",
        r"Total retries: 0",
    ):
        assert any(re.fullmatch(pattern, line) for line in text), pattern


def load_report(doc: dict) -> LoadReport:
    r = dict(doc)
    for key in ("latency", "queue_wait", "execution"):
        r[key] = Distribution(**r[key])
    r["pools"] = {name: PoolLoad(**p) for name, p in r["pools"].items()}
    r["task_types"] = {
        name: TaskLoad(**{**t, **{k: Distribution(**t[k]) for k in ("latency", "queue_wait", "execution")}})
        for name, t in r["task_types"].items()
    }
    r["failures"] = tuple(r["failures"])
    return LoadReport(**r)


def test_the_load_test_sample_is_what_the_report_prints():
    text, doc = sample("load-test")
    assert text[0] == "$ python load_test.py --tasks 20"
    in_order(render_load(load_report(doc["runs"][0]["report"])), text)


def status_report(doc: dict) -> StatusReport:
    pools = tuple(
        PoolStatus(**{**p, "queues": tuple(p["queues"]), "workers": tuple(WorkerStatus(**w) for w in p["workers"])})
        for p in doc["pools"]
    )
    queues = tuple(QueueStatus(**q) for q in doc["queues"])
    return StatusReport(**{**doc, "pools": pools, "queues": queues, "problems": tuple(doc["problems"])})


@pytest.mark.parametrize(("name", "render"), [("status", render_status), ("health", render_health)])
def test_status_and_health_samples_are_what_the_report_prints(name, render):
    text, doc = sample(name)
    assert text[1:] == render(status_report(doc))


def test_the_bad_config_sample_is_one_line_naming_the_key():
    text = (SAMPLES / "bad-config.txt").read_text().splitlines()
    assert len(text) == 2 and text[1].startswith("dispatch.py: error: bad-config.yml: retry.max_retries")
