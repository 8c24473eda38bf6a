"""The example a user copies (examples/bench-lab): run as a user would, from a copy of its folder, with the
`dts` command — `dts up` (the broker vhost and user made for the folder), a scenario with its JUnit file,
a busy board retried, a load test over its own tasks, a pool scaled, `dts down` — on the local engine,
and in CI on the compose engine, whose worker image copies the example's code and installs its
requirements (pytest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, check_compose_version, compose_leftovers, compose_problem, need_engine
from junitparser import JUnitXml
from test_package import forget_project

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "bench-lab"


@pytest.fixture
def lab(tmp_path):
    """A copy of the example's folder; its broker vhost and user removed afterwards, and the compose project's
    volumes (Compose v1.29 creates every volume the file declares, the brokers' too, and `dts down` keeps them)."""
    from dts.config import project_name

    folder = tmp_path / "bench-lab"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", ".run", ".env", "results"))
    yield folder
    forget_project(folder)
    volumes = compose_leftovers(project_name(folder))["volume"] if shutil.which("docker") else []
    if volumes:
        subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True, timeout=60)


def dts(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`dts ARGS` in the folder, with none of the tests' broker settings (the folder's own .env is used); the
    test's DTS_COMPOSE, if it sets one."""
    env = {
        k: v for k, v in os.environ.items() if k == "DTS_COMPOSE" or not k.startswith(("DTS_", "BROKER_", "COMPOSE_"))
    }
    env |= {"PYTHONPATH": str(ROOT), "LAB_DIR": str(folder / "bench")}
    return subprocess.run([sys.executable, "-m", "dts", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def run_json(folder: Path, *args: str, code: int = 0) -> dict:
    proc = dts(folder, *args, "--json", "--no-save")
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr
    return json.loads(proc.stdout)


def the_nightly_scenario_reports_its_pytest_cases(folder: Path) -> None:
    doc = run_json(folder, "dispatch", "--scenario", "nightly", "--junit", "nightly.xml")
    assert sorted((t["task"], t["state"]) for t in doc["tasks"]) == [
        ("board_tests", "succeeded"),
        ("board_tests", "succeeded"),
        ("flash", "succeeded"),
    ]
    assert all(t["result"]["worker"].startswith("worker-c@") for t in doc["tasks"])
    xml = JUnitXml.fromfile(str(folder / "nightly.xml"))
    suite = xml if xml._tag == "testsuite" else next(iter(xml))
    merged = sorted(case.name.split(": ")[1] for case in suite if ": " in case.name)
    assert merged == ["test_boot", "test_uart", "test_version"], [case.name for case in suite]


def pools(folder: Path) -> dict[str, int]:
    proc = dts(folder, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {p["pool"]: p["alive"] for p in json.loads(proc.stdout)["pools"]}  # workers answering ping


def a_busy_board_is_retried_a_failing_test_reported_and_a_load_runs(folder: Path) -> None:
    doc = run_json(folder, "dispatch", "--task", "board_tests:board=rev-busy", "--task", "board_tests:select=uart",
                   "--junit", "failed.xml", code=1)  # fmt: skip
    busy, uart = sorted(doc["tasks"], key=lambda t: t["output"]["exit_code"], reverse=True)
    assert busy["error"] == "exit code 75: rev-busy is held by another job; gave up after 3 attempts (max_retries=2)"
    assert uart["error"].startswith("exit code 1: 1 failed") and uart["output"]["report"]["text"]
    xml = JUnitXml.fromfile(str(folder / "failed.xml"))
    suite = xml if xml._tag == "testsuite" else next(iter(xml))
    failed = [case for case in suite if case.result and case.name.endswith(": test_uart")]
    assert len(failed) == 1 and "no banner" in failed[0].result[0].message
    load = run_json(folder, "load-test", "--mix", "flash=2,board_tests=1", "--tasks", "3")
    sent = {name: t["tasks"] for name, t in load["reports"][-1]["task_types"].items()}
    assert sent == {"flash": 4, "board_tests": 2} and load["reports"][-1]["failed"] == 0, load["reports"][-1]


@pytest.mark.parametrize(
    ("engine", "compose"),
    [
        ("local", None),
        pytest.param("compose", None, marks=pytest.mark.docker, id="compose-v2"),
        pytest.param("compose", "docker-compose", marks=pytest.mark.docker, id="compose-v1.29"),
    ],
)
def test_the_example_as_a_user_runs_it(lab, engine, compose, monkeypatch):
    """On compose, pytest comes from lab/requirements.txt, installed in the worker image; compose v2 (the
    plugin) by default, and Compose v1.29 (`DTS_COMPOSE=docker-compose`) kept covered."""
    if engine == "compose":
        need_engine(compose_problem())
    if compose:
        monkeypatch.setenv("DTS_COMPOSE", compose)
    if engine == "compose":
        check_compose_version()  # v2 or v1.29, the version the docs' table of tested versions names
    up = dts(lab, "up", "--engine", engine)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        the_nightly_scenario_reports_its_pytest_cases(lab)
        a_busy_board_is_retried_a_failing_test_reported_and_a_load_runs(lab)
        scaled = dts(lab, "scale", "worker-c", "2")
        assert scaled.returncode == 0, scaled.stderr
        assert pools(lab)["worker-c"] == 2
    finally:
        down = dts(lab, "down")
    assert down.returncode == 0, down.stderr
