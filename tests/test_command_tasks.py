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
FLAKY = "import sys, pathlib; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
FLAKY += "p.write_text(str(n + 1)); sys.exit(75 if n < 2 else 0)"


def config_for(folder: Path) -> Path:
    (folder / "stubborn.py").write_text(STUBBORN)
    config = folder / "test-config.yml"
    config.write_text(
        textwrap.dedent(f"""\
        name: Command tasks
        broker: {{url: "{vhost_url(VHOST)}", connect_timeout: 5}}
        pools:
          worker-a: {{queues: [queue_a], replicas: 1}}
          worker-b: {{queues: [queue_b], replicas: 1}}
          worker-c: {{queues: [queue_c], replicas: 1, concurrency: 3}}
        tasks:
          echo:
            queue: queue_c
            command: ["{PY}", "-c", "import sys; print('hello', sys.argv[1]); print('to err', file=sys.stderr)", "{{who}}"]
            params: {{who: world}}
          flaky:
            queue: queue_c
            command: ["{PY}", "-c", "{FLAKY}", "{{marker}}"]
            params: {{marker: "{folder / "flaky.count"}"}}
            retry_on_exit: [75]
          fails:
            queue: queue_c
            command: ["{PY}", "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]
            retry_on_exit: [75]
          missing: {{queue: queue_c, command: [no-such-program-of-dts]}}
          soft:
            queue: queue_c
            command: ["{PY}", "{folder / "stubborn.py"}", "{{pidfile}}"]
            params: {{pidfile: "{folder / "soft.pid"}"}}
            soft_time_limit: 1
            time_limit: 30
          hard:
            queue: queue_c
            command: ["{PY}", "{folder / "stubborn.py"}", "{{pidfile}}"]
            params: {{pidfile: "{folder / "hard.pid"}"}}
            time_limit: 2
          long:
            queue: queue_c
            command: ["{PY}", "{folder / "stubborn.py"}", "{{pidfile}}"]
            params: {{pidfile: "{folder / "long.pid"}"}}
        retry: {{max_retries: 3, backoff_base: 0.05, backoff_max: 1.0, jitter: false}}
        engine: {{name: local, stop_timeout: 30, start_timeout: 60}}
        dispatch: {{timeout: 60}}
        """)
    )
    return config


@pytest.fixture(scope="module")
def fleet(rabbitmq, tmp_path_factory):
    fresh_vhost(VHOST)
    folder = tmp_path_factory.mktemp("cmd")
    config = config_for(folder)
    with local_fleet(config, vhost_url(VHOST), folder / ".run") as (_, app, _):
        yield config, folder, app


def dispatch(config, *tasks):
    argv = ["dispatch.py", "--config", str(config), "--no-save", "--json", *(a for t in tasks for a in ("--task", t))]
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


def test_no_process_of_a_command_outlives_its_soft_limit(fleet):
    config, folder, _ = fleet
    proc, tasks = dispatch(config, "soft")
    assert proc.returncode == 1 and "exceeded soft time limit of 1s" in tasks["soft"]["error"], tasks["soft"]
    grandchild = int((folder / "soft.pid").read_text())
    assert gone(grandchild, within=10), f"pid {grandchild} (ignores SIGTERM) outlived the task"


def test_no_process_of_a_command_outlives_a_hard_kill(fleet):
    config, folder, _ = fleet
    proc, tasks = dispatch(config, "hard")
    assert proc.returncode == 1 and "TimeLimitExceeded" in tasks["hard"]["error"], tasks["hard"]
    grandchild = int((folder / "hard.pid").read_text())
    assert gone(grandchild, within=10), f"pid {grandchild} outlived the pool process the hard limit killed"


def test_dts_revoke_stops_a_running_command_and_its_whole_group(fleet):
    config, folder, app = fleet
    result = app.send_task("celery_app.long", queue="queue_c", routing_key="queue_c", exchange="queue_c")
    pidfile = folder / "long.pid"
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.1)  # polling for the command's start, under the deadline
    grandchild = int(pidfile.read_text())
    revoked = run_cli("-m", "dts", "revoke", result.id, "--config", str(config), env={"BROKER_URL": vhost_url(VHOST)})
    assert revoked.returncode == 0 and f"revoked {result.id}" in revoked.stdout, revoked.stderr
    assert gone(grandchild, within=10), f"pid {grandchild} outlived the revoked task"
    result.get(timeout=30, propagate=False)
    assert result.state == "REVOKED"
