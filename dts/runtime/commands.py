"""What a command task does (`command: [argv, ...]` in test-config.yml): run a program on the worker, never
through a shell, in a session (process group) of its own, and make sure no process of it outlives the task.

    argv_of(spec.command, spec, params)   # the argv with its {name} placeholders filled (whole or parts of elements)
    run_command(task, name, settings, params)   # in a worker: the result envelope, or a failure, or a retry
    kill_recorded(task_id)             # the worker's main process, when the pool process died: its group killed

After every attempt, whatever happened, the task's `cleanup:` argv runs (bounded by cleanup_timeout, its own
group killed past it); a failed clean-up is said with the task's result or failure. A task with `report:
junit` gets `{report}`, a path in the attempt's own folder: the file (at most REPORT_BYTES) comes back in
the result's value, for the run's JUnit file (dts.reports.junit).

Celery's soft time limit signals only the pool process, and its hard limit kills the pool process without
its children (celery#2353): so at the soft limit the command's whole group gets SIGTERM, then SIGKILL after
KILL_GRACE seconds; and the group is recorded (a file named after the task id) so that the worker's main
process kills it when the pool process itself is killed (hard limit, revoke with terminate, a crash).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from dts.config import Settings, TaskSettings
from dts.config.schema import REPORT_PLACEHOLDER
from dts.runtime.calls import DELAYS_KEY, CallFailed, task_params
from dts.runtime.work import TimeLimitError, envelope, retry_later, soft_limit_of

log = logging.getLogger("dts.commands")
TAIL_BYTES = 4096  # of stdout and of stderr, kept in the result
REPORT_BYTES = 1024 * 1024  # of a command's report file, kept in the result (the rest cut, with a note)
KILL_GRACE = 5.0  # seconds between the group's SIGTERM and its SIGKILL
GROUPS = Path(tempfile.gettempdir()) / "dts-command-groups"  # <task id> -> its command's group, its clean-up


@dataclass
class Attempt:
    """What one run of a command left: its exit code, output tails, report, and the clean-up's failure."""

    code: int | None = None
    out: str = ""
    err: str = ""
    report: dict[str, Any] | None = None  # {"format", "text", "note"}: with report: junit
    cleanup: str | None = None  # why the clean-up failed (None: it succeeded, or there is none)


def argv_of(argv: tuple[str, ...], spec: TaskSettings, params: dict[str, Any]) -> list[str]:
    """`argv` (the command or its clean-up), each {name} filled from the params (declared defaults, then the
    dispatch's, and {report}: the report's path)."""
    values = {**spec.params, **params}
    return [part.format_map({k: str(v) for k, v in values.items()}) for part in argv]


def tail(path: Path) -> str:
    """The last TAIL_BYTES of a file, as text (invalid UTF-8 replaced)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")


def record(task_id: str, pgid: int, cleanup: dict[str, Any] | None) -> Path:
    """The command's group (and its clean-up: argv, cwd, env, timeout), for the worker's main process."""
    GROUPS.mkdir(mode=0o700, exist_ok=True)
    path = GROUPS / task_id
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # env: may hold what only the worker sees
    with os.fdopen(fd, "w") as f:
        json.dump({"pgid": pgid, "cleanup": cleanup}, f)
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
    process was killed before it could), then start its clean-up, watched from a thread (the main process
    does not wait: the outcome is logged). True when there was a group."""
    path = GROUPS / task_id
    try:
        recorded = json.loads(path.read_text())
        pgid, cleanup = int(recorded["pgid"]), recorded.get("cleanup")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    if cleanup:
        threading.Thread(target=_logged_cleanup, args=(task_id, cleanup), daemon=True).start()
    return True


def _logged_cleanup(task_id: str, cleanup: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="dts-cleanup-") as folder:
        why = run_cleanup(cleanup, Path(folder))
    if why:
        log.warning("clean-up of task %s (its pool process killed) failed: %s", task_id, why)
    else:
        log.info("clean-up of task %s (its pool process killed) done", task_id)


def run_cleanup(cleanup: dict[str, Any], folder: Path) -> str | None:
    """Run a clean-up ({"argv", "cwd", "env", "timeout"}) in a group of its own, killed past its timeout.
    Returns why it failed, or None."""
    err = folder / "cleanup.stderr"
    with err.open("wb") as stderr:
        try:
            proc = subprocess.Popen(
                cleanup["argv"],
                cwd=cleanup["cwd"],
                env={**os.environ, **cleanup["env"]},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            return (
                f"{'command not found' if isinstance(exc, FileNotFoundError) else exc.strerror}: {cleanup['argv'][0]}"
            )
        try:
            code = proc.wait(timeout=cleanup["timeout"])
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # past its timeout, or what it left running
            proc.wait()
    if code is None:
        return f"timed out after {cleanup['timeout']:g}s (its process group killed)"
    return f"exit code {code}: {last_line(tail(err)) or 'no output'}" if code else None


def read_report(path: Path) -> dict[str, Any]:
    """The report file the command wrote: its text (at most REPORT_BYTES, invalid UTF-8 replaced) and a note
    when it was cut or is not there."""
    if not path.is_file():
        return {"format": "junit", "text": None, "note": "the command wrote no report"}
    size = path.stat().st_size
    with path.open("rb") as f:
        text = f.read(REPORT_BYTES).decode("utf-8", errors="replace")
    note = f"cut at {REPORT_BYTES} of {size} bytes" if size > REPORT_BYTES else None
    return {"format": "junit", "text": text, "note": note}


def _run(spec: TaskSettings, params: dict[str, Any], task_id: str, attempt: Attempt) -> None:
    """Run the command to its end, then its clean-up, filling `attempt`. At the soft time limit its group is
    stopped (SIGTERM, then SIGKILL), the clean-up runs, and SoftTimeLimitExceeded goes on."""
    env = {**os.environ, **spec.env}
    with tempfile.TemporaryDirectory(prefix="dts-command-") as folder:
        out, err, report = Path(folder, "stdout"), Path(folder, "stderr"), Path(folder, "report.xml")
        params = {**params, REPORT_PLACEHOLDER: str(report)} if spec.report else params
        cleanup = (
            {
                "argv": argv_of(spec.cleanup, spec, params),
                "cwd": spec.cwd,
                "env": spec.env,
                "timeout": spec.cleanup_timeout,
            }
            if spec.cleanup
            else None
        )
        try:
            with out.open("wb") as stdout, err.open("wb") as stderr:
                try:
                    proc = subprocess.Popen(
                        argv_of(spec.command, spec, params),
                        cwd=spec.cwd,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=stdout,
                        stderr=stderr,
                        start_new_session=True,
                    )
                except FileNotFoundError:
                    raise CallFailed(f"command not found: {spec.command[0]}; not retried") from None
                except PermissionError:
                    raise CallFailed(f"command not executable: {spec.command[0]}; not retried") from None
                _wait(proc, record(task_id, proc.pid, cleanup))
            attempt.code, attempt.out, attempt.err = proc.returncode, tail(out), tail(err)
            attempt.report = read_report(report) if spec.report else None
        finally:
            if cleanup:
                attempt.cleanup = run_cleanup(cleanup, Path(folder))


def _wait(proc: subprocess.Popen, recorded: Path) -> None:
    """Wait for the command; at the soft time limit stop its group. Its group is killed either way (what it
    left running in the background goes too), and its record removed."""
    try:
        proc.wait()
    except SoftTimeLimitExceeded:
        kill_group(proc, KILL_GRACE)
        proc.wait()
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        recorded.unlink(missing_ok=True)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_command(task, name: str, settings: Settings, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Body of a command task: run it; exit 0 succeeds, an exit code in retry_on_exit is retried with
    backoff, any other fails the task with the code and the last line of stderr (its output and report go with
    the failure: CallFailed's output). A failed clean-up is said after the result's message, or the
    failure's reason."""
    spec, policy = settings.tasks[name], settings.retry_for(name)
    params, delays = task_params(spec, kwargs)
    retries = task.request.retries
    started_at, t0, attempt = datetime.now(UTC), time.perf_counter(), Attempt()
    try:
        _run(spec, params, task.request.id, attempt)
    except SoftTimeLimitExceeded:
        raise TimeLimitError(
            f"{name} exceeded soft time limit of {soft_limit_of(task) or 0:g}s (stopped after "
            f"{time.perf_counter() - t0:.2f}s; its process group killed); not retried{_cleanup_note(attempt)}"
        ) from None
    except CallFailed as exc:
        raise CallFailed(f"{exc}{_cleanup_note(attempt)}") from None
    code, out, err, note = attempt.code, attempt.out, attempt.err, _cleanup_note(attempt)
    value = {"exit_code": code, "stdout": out, "stderr": err}
    value |= {"report": attempt.report} if attempt.report else {}
    value |= {"cleanup": attempt.cleanup} if attempt.cleanup else {}
    if code != 0:
        why = f"exit code {code}: {last_line(err) or last_line(out) or 'no output'}"
        if code not in spec.retry_on_exit:
            raise CallFailed(f"{why}; not retried{note}", value)
        if retries >= policy.max_retries:
            gave_up = f"gave up after {retries + 1} attempts (max_retries={policy.max_retries})"
            raise CallFailed(f"{why}; {gave_up}{note}", value)
        raise retry_later(task, CallFailed(why + note), delays, policy, DELAYS_KEY)
    message = (last_line(out) or "exit code 0") + (f" ({note[2:]})" if note else "")
    return envelope(task, spec, message, delays, started_at, t0, value=value)


def _cleanup_note(attempt: Attempt) -> str:
    return f"; cleanup failed: {attempt.cleanup}" if attempt.cleanup else ""
