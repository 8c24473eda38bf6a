"""What a command task does (`command: [argv, ...]` in test-config.yml): run a program on the worker, never
through a shell, in a session (process group) of its own, and make sure no process of it outlives the task.

    argv_of(spec, params)              # the argv with its {name} placeholders filled (whole or parts of elements)
    run_command(task, name, settings, params)   # in a worker: the result envelope, or a failure, or a retry
    kill_recorded(task_id)             # the worker's main process, when the pool process died: its group killed

Celery's soft time limit signals only the pool process, and its hard limit kills the pool process without
its children (celery#2353): so at the soft limit the command's whole group gets SIGTERM, then SIGKILL after
KILL_GRACE seconds; and the group is recorded (a file named after the task id) so that the worker's main
process kills it when the pool process itself is killed (hard limit, revoke with terminate, a crash).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from dts.config import Settings, TaskSettings
from dts.runtime.calls import DELAYS_KEY, CallFailed
from dts.runtime.work import TimeLimitError, envelope, retry_later, soft_limit_of

TAIL_BYTES = 4096  # of stdout and of stderr, kept in the result
KILL_GRACE = 5.0  # seconds between the group's SIGTERM and its SIGKILL
GROUPS = Path(tempfile.gettempdir()) / "dts-command-groups"  # <task id> -> the process group of its command


def argv_of(spec: TaskSettings, params: dict[str, Any]) -> list[str]:
    """The command's argv, each {name} filled from the params (declared defaults, then the dispatch's)."""
    values = {**spec.params, **params}
    return [part.format_map({k: str(v) for k, v in values.items()}) for part in spec.command]


def tail(path: Path) -> str:
    """The last TAIL_BYTES of a file, as text (invalid UTF-8 replaced)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")


def record(task_id: str, pgid: int) -> Path:
    GROUPS.mkdir(mode=0o700, exist_ok=True)
    path = GROUPS / task_id
    path.write_text(str(pgid))
    return path


def kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the command's whole group, then SIGKILL to what is left after `grace` seconds (the
    command itself reaped as soon as it exits, so that a group of only it ends the wait)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()
            os.killpg(proc.pid, 0)  # ProcessLookupError once every process of the group is gone
            time.sleep(0.05)  # polling the group, under the grace deadline
        os.killpg(proc.pid, signal.SIGKILL)


def kill_recorded(task_id: str) -> bool:
    """In the worker's main process: kill the group the task's command ran in, if one is recorded (its pool
    process was killed before it could). True when there was one."""
    path = GROUPS / task_id
    try:
        pgid = int(path.read_text())
    except (OSError, ValueError):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return True


def _run(spec: TaskSettings, argv: list[str], task_id: str) -> tuple[int, str, str]:
    """Run the command to its end: (exit code, stdout tail, stderr tail). At the soft time limit its group
    is stopped (SIGTERM, then SIGKILL) and SoftTimeLimitExceeded goes on."""
    env = {**os.environ, **spec.env}
    with tempfile.TemporaryDirectory(prefix="dts-command-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            try:
                proc = subprocess.Popen(
                    argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                    start_new_session=True,
                )  # fmt: skip
            except FileNotFoundError:
                raise CallFailed(f"command not found: {argv[0]}; not retried") from None
            except PermissionError:
                raise CallFailed(f"command not executable: {argv[0]}; not retried") from None
            recorded = record(task_id, proc.pid)  # its session id is its pid: the group of everything it starts
            try:
                code = proc.wait()
            except SoftTimeLimitExceeded:
                kill_group(proc, KILL_GRACE)
                proc.wait()
                raise
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what it left running in the background goes too
                recorded.unlink(missing_ok=True)
        return code, tail(out), tail(err)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_command(task, name: str, settings: Settings, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Body of a command task: run it; exit 0 succeeds, an exit code in retry_on_exit is retried with
    backoff, any other fails the task with the code and the last line of stderr."""
    spec, policy = settings.tasks[name], settings.retry_for(name)
    params = dict(kwargs)
    delays = list(params.pop(DELAYS_KEY, None) or [])
    attempt = task.request.retries
    started_at, t0 = datetime.now(UTC), time.perf_counter()
    try:
        code, out, err = _run(spec, argv_of(spec, params), task.request.id)
    except SoftTimeLimitExceeded:
        raise TimeLimitError(
            f"{name} exceeded soft time limit of {soft_limit_of(task) or 0:g}s (stopped after "
            f"{time.perf_counter() - t0:.2f}s; its process group killed); not retried"
        ) from None
    if code != 0:
        said = last_line(err) or last_line(out) or "no output"
        why = f"exit code {code}: {said}"
        if code not in spec.retry_on_exit:
            raise CallFailed(f"{why}; not retried")
        if attempt >= policy.max_retries:
            raise CallFailed(f"{why}; gave up after {attempt + 1} attempts (max_retries={policy.max_retries})")
        raise retry_later(task, CallFailed(why), delays, policy, DELAYS_KEY)
    value = {"exit_code": code, "stdout": out, "stderr": err}
    return envelope(task, spec, last_line(out) or "exit code 0", delays, started_at, t0, value=value)
