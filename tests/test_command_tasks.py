"""Command tasks (`command: [argv, ...]`) on real local workers (prefork) through the real broker, in a vhost
of their own: placeholders filled from the params, exit 0 succeeding with the output's tails, an exit code
`retry_on_exit` names retried then succeeding, any other failing at once with the code and stderr's last
line, a program that is not there; and no process of a command outliving its task: a grandchild that
ignores SIGTERM is gone after the soft time limit, and again after the hard limit killed the pool process
(the worker's main process kills the command's recorded process group)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import CHECKOUT, fresh_vhost, local_fleet, run_cli, vhost_url

pytestmark = pytest.mark.integration
VHOST = f"dts-test-cmd-{CHECKOUT}"
PY = sys.executable
# a command that starts a grandchild which ignores SIGTERM, notes its pid, then both wait a long time
STUBBORN = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
    open(sys.argv[1], "w").write(str(child.pid))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(120)
    """)
BOARD_TESTS = textwrap.dedent("""\
    import pytest
    def test_boots(): pass
    def test_uart(): assert False, "no banner"
    def test_wifi(): pytest.skip("no antenna")
    """)
NOTE = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))"  # a clean-up: a line in a file
FLAKY = "import sys, pathlib; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
FLAKY += "p.write_text(str(n + 1)); sys.exit(75 if n < 2 else 0)"


CONFIG = """\
        name: Command tasks
        broker: {{url: "{url}", connect_timeout: 5}}
        pools:
          worker-a: {{queues: [queue_a], replicas: 1}}
          worker-b: {{queues: [queue_b], replicas: 1}}
          worker-c: {{queues: [queue_c], replicas: 1, concurrency: 3}}
        tasks:
          echo:
            queue: queue_c
            command: ["{py}", "-c", "import sys; print('hello', sys.argv[1]); print('to err', file=sys.stderr)", "{{who}}"]
            params: {{who: world}}
          flaky:
            queue: queue_c
            command: ["{py}", "-c", "{flaky}", "{{marker}}"]
            params: {{marker: "{folder}/flaky.count"}}
            retry_on_exit: [75]
          fails:
            queue: queue_c
            command: ["{py}", "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]
            retry_on_exit: [75]
          missing: {{queue: queue_c, command: [no-such-program-of-dts], cleanup: ["{py}", "-c", "{note}", "{log}", missing]}}
          pytested:
            queue: queue_c
            command: ["{py}", -m, pytest, -q, -p, no:cacheprovider, "--junitxml={{report}}", -k, "{{select}}", "{folder}/test_board.py"]
            params: {{select: "boots or uart or wifi"}}
            report: junit
            cleanup: ["{py}", "-c", "{note}", "{log}", "pytested {{select}}"]
          stuck_relay:
            queue: queue_c
            command: ["{py}", "-c", "print('flashed')"]
            cleanup: ["{py}", "-c", "import sys; print('relay stuck', file=sys.stderr); sys.exit(3)"]
          soft:
            queue: queue_c
            command: ["{py}", "{folder}/stubborn.py", "{{pidfile}}"]
            params: {{pidfile: "{folder}/soft.pid"}}
            cleanup: ["{py}", "-c", "{note}", "{log}", soft]
            soft_time_limit: 1
            time_limit: 30
          hard:
            queue: queue_c
            command: ["{py}", "{folder}/stubborn.py", "{{pidfile}}"]
            params: {{pidfile: "{folder}/hard.pid"}}
            cleanup: ["{py}", "-c", "{note}", "{log}", hard]
            time_limit: 2
          long:
            queue: queue_c
            command: ["{py}", "{folder}/stubborn.py", "{{pidfile}}"]
            params: {{pidfile: "{folder}/long.pid"}}
          crash:
            queue: queue_c
            command: ["{py}", "{folder}/stubborn.py", "{{pidfile}}"]
            params: {{pidfile: "{folder}/crash.pid"}}
            cleanup: ["{py}", "-c", "{note}", "{log}", crash]
        retry: {{max_retries: 3, backoff_base: 0.05, backoff_max: 1.0, jitter: false}}
        engine: {{name: local, stop_timeout: 30, start_timeout: 60}}
        dispatch: {{timeout: 60}}
        """  # str.format: {url}, {py}, {folder}, ...; {{name}} a placeholder of the task


def config_for(folder: Path) -> Path:
    (folder / "stubborn.py").write_text(STUBBORN)
    (folder / "test_board.py").write_text(BOARD_TESTS)
    config = folder / "test-config.yml"
    fills = {
        "url": vhost_url(VHOST),
        "py": PY,
        "flaky": FLAKY,
        "note": NOTE,
        "folder": folder,
        "log": folder / "cleanup.log",
    }
    config.write_text(textwrap.dedent(CONFIG).format(**fills))
    return config


@pytest.fixture(scope="module")
def fleet(rabbitmq, tmp_path_factory):
    fresh_vhost(VHOST)
    folder = tmp_path_factory.mktemp("cmd")
    config = config_for(folder)
    with local_fleet(config, vhost_url(VHOST), folder / ".run") as (_, app, _):
        yield config, folder, app


def dispatch(config, *tasks):
    """`dispatch.py --task T ...` (an argument starting with -- and what follows it are passed as they are)."""
    flags = list(tasks[next((n for n, t in enumerate(tasks) if t.startswith("--")), len(tasks)) :])
    tasks = tasks[: len(tasks) - len(flags)]
    argv = ["dispatch.py", "--config", str(config), "--no-save", "--json", *(a for t in tasks for a in ("--task", t))]
    argv += flags
    proc = run_cli(*argv, env={"BROKER_URL": vhost_url(VHOST)}, timeout=120)
    return proc, {t["task"]: t for t in json.loads(proc.stdout)["tasks"]}


def gone(pid: int, within: float) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)  # polling the process table, under the deadline
    return False


def test_a_command_runs_with_its_placeholders_and_returns_its_output(fleet):
    config, _, _ = fleet
    proc, tasks = dispatch(config, "echo:who=lab")
    assert proc.returncode == 0, proc.stderr
    result = tasks["echo"]["result"]
    assert result["message"] == "hello lab" and result["worker"].startswith("worker-c@")
    assert result["value"] == {"exit_code": 0, "stdout": "hello lab\n", "stderr": "to err\n"}


def test_exit_codes_retried_failed_or_not_found(fleet):
    config, _, _ = fleet
    proc, tasks = dispatch(config, "flaky", "fails", "missing")
    assert proc.returncode == 1
    assert tasks["flaky"]["ok"] and tasks["flaky"]["result"]["retries"] == 2  # exit 75 twice, then 0
    assert tasks["fails"]["error"] == "exit code 3: boom; not retried"
    assert tasks["missing"]["error"] == "command not found: no-such-program-of-dts; not retried"


def cleaned(folder: Path, line: str, within: float = 0.0) -> bool:
    """Whether a clean-up wrote `line` to the log (within `within` seconds: the worker's main process runs a
    killed task's clean-up without waiting for it)."""
    deadline = time.monotonic() + within
    while True:
        log = folder / "cleanup.log"
        if log.exists() and line in log.read_text().splitlines():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # polling the clean-up's file, under the deadline


def test_a_pytest_selection_reports_its_testcases_and_cleans_up(fleet, tmp_path):
    from junitparser import JUnitXml

    config, folder, _ = fleet
    junit = tmp_path / "report.xml"
    proc, tasks = dispatch(config, "pytested", "stuck_relay", "missing", "--junit", str(junit))
    assert proc.returncode == 1, proc.stderr
    failed = tasks["pytested"]
    assert failed["state"] == "failed" and failed["error"].startswith("exit code 1: "), failed
    assert failed["output"]["exit_code"] == 1 and "1 failed, 1 passed, 1 skipped" in failed["output"]["stdout"]
    assert cleaned(folder, "pytested boots or uart or wifi") and cleaned(folder, "missing")
    xml = JUnitXml.fromfile(str(junit))
    suite = xml if xml._tag == "testsuite" else next(iter(xml))
    cases = {case.name: case for case in suite}
    assert set(cases) >= {"pytested: test_boots", "pytested: test_uart", "pytested: test_wifi"}, set(cases)
    assert cases["pytested: test_boots"].is_passed and cases["pytested: test_wifi"].is_skipped
    assert "no banner" in cases["pytested: test_uart"].result[0].message
    assert "report: 3 testcase(s) merged" in cases["pytested"].system_out
    # a clean-up that fails is said with the result: the task itself succeeded
    assert tasks["stuck_relay"]["result"]["message"] == "flashed (cleanup failed: exit code 3: relay stuck)"
    assert tasks["missing"]["error"] == "command not found: no-such-program-of-dts; not retried"


def test_no_process_of_a_command_outlives_its_soft_limit(fleet):
    config, folder, _ = fleet
    proc, tasks = dispatch(config, "soft")
    assert proc.returncode == 1 and "exceeded soft time limit of 1s" in tasks["soft"]["error"], tasks["soft"]
    grandchild = int((folder / "soft.pid").read_text())
    assert gone(grandchild, within=10), f"pid {grandchild} (ignores SIGTERM) outlived the task"
    assert cleaned(folder, "soft"), "the clean-up did not run after the soft limit"


def test_no_process_of_a_command_outlives_a_hard_kill(fleet):
    config, folder, _ = fleet
    proc, tasks = dispatch(config, "hard")
    assert proc.returncode == 1 and "TimeLimitExceeded" in tasks["hard"]["error"], tasks["hard"]
    grandchild = int((folder / "hard.pid").read_text())
    assert gone(grandchild, within=10), f"pid {grandchild} outlived the pool process the hard limit killed"
    assert cleaned(folder, "hard", within=30), "the worker's main process did not run the clean-up"


def started(app, folder: Path, task: str):
    """Send `task` (a stubborn command) and wait until it runs: its result, and its grandchild's pid."""
    result = app.send_task(f"celery_app.{task}", queue="queue_c", routing_key="queue_c", exchange="queue_c")
    pidfile = folder / f"{task}.pid"
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.1)  # polling for the command's start, under the deadline
    return result, int(pidfile.read_text())


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_pool_process_killed_outright_leaves_no_command_and_its_cleanup_runs(fleet):
    """SIGKILL to the pool process (an OOM kill, a crash): nothing of it runs its finally clauses, so the
    worker's main process kills the recorded group and runs the clean-up."""
    import os
    import signal

    _, folder, app = fleet
    result, grandchild = started(app, folder, "crash")
    os.kill(parent_of(parent_of(grandchild)), signal.SIGKILL)  # grandchild -> command -> pool process
    assert gone(grandchild, within=10), f"pid {grandchild} outlived its killed pool process"
    assert cleaned(folder, "crash", within=30), "the worker's main process did not run the clean-up"
    # its message goes back to the queue (task_reject_on_worker_lost) and runs again: then revoked
    pidfile, deadline = folder / "crash.pid", time.monotonic() + 30
    while pidfile.read_text() in ("", str(grandchild)):
        assert time.monotonic() < deadline, "the task was not run again"
        time.sleep(0.1)  # polling for the second run's start, under the deadline
    app.control.revoke(result.id, terminate=True)
    assert gone(int(pidfile.read_text()), within=10)
    result.get(timeout=30, propagate=False)
    assert result.state == "REVOKED"


def test_dts_revoke_stops_a_running_command_and_its_whole_group(fleet):
    config, folder, app = fleet
    result, grandchild = started(app, folder, "long")
    revoked = run_cli("-m", "dts", "revoke", result.id, "--config", str(config), env={"BROKER_URL": vhost_url(VHOST)})
    assert revoked.returncode == 0 and f"revoked {result.id}" in revoked.stdout, revoked.stderr
    assert gone(grandchild, within=10), f"pid {grandchild} outlived the revoked task"
    result.get(timeout=30, propagate=False)
    assert result.state == "REVOKED"
