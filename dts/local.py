"""The local engine: workers as `celery worker` processes on this host, started through the same entry
point as the containers (`python -m dts.worker POOL`), tracked by pid files, logs under .run/.

The n-th worker of a pool is node `worker-a@<hostname>-<n>`; its pid file `.run/worker-a-<n>.pid` holds the
pid and the (redacted) broker URL it was started for, so workers started for another broker are restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery.utils.nodenames import host_format

from dts.broker import redact_url
from dts.config import PROJECT_DIR, RUN_DIR, Settings
from dts.engine import (
    check_sizes,
    declared_sizes,
    indices_to_start,
    indices_to_stop,
    scale_plan,
    wait_for_pong,
)
from dts.worker import launch_argv, nodename

log = logging.getLogger("dts.local")
Target = tuple[str, int, int]  # pool, index, pid


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


class LocalEngine:
    """Workers as local processes."""

    name = "local"

    def __init__(self, settings: Settings, app, run_dir: Path = RUN_DIR, env: dict[str, str] | None = None):
        self.settings, self.app = settings, app
        self.run_dir = Path(run_dir)
        self.env = dict(os.environ if env is None else env)
        self.env.update({"DTS_CONFIG": str(settings.path), "BROKER_URL": settings.broker.url})
        self._procs: dict[int, subprocess.Popen] = {}
        self._broker_id = redact_url(settings.broker.url)

    # -- files and processes
    def _pidfile(self, pool: str, index: int) -> Path:
        return self.run_dir / f"{pool}-{index}.pid"

    def logfile(self, pool: str, index: int) -> Path:
        return self.run_dir / f"{pool}-{index}.log"

    def node(self, pool: str, index: int) -> str:
        return host_format(nodename(pool, f"%h-{index}"))

    def _alive(self, pid: int) -> bool:
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True
        return b"celery_app" in cmdline or b"dts.worker" in cmdline  # not a recycled pid; not a zombie

    def _live(self) -> dict[str, dict[int, tuple[int, str]]]:
        """{pool: {index: (pid, broker it was started for)}} of live workers; stale pid files removed."""
        found: dict[str, dict[int, tuple[int, str]]] = {pool: {} for pool in self.settings.pools}
        for pidfile in sorted(self.run_dir.glob("*.pid")):
            pool, _, index = pidfile.stem.rpartition("-")
            try:
                lines = pidfile.read_text().splitlines()
                pid, broker = int(lines[0]), (lines[1] if len(lines) > 1 else "")
            except (ValueError, OSError, IndexError):
                pid, broker = 0, ""
            if pool in found and index.isdigit() and pid and self._alive(pid):
                found[pool][int(index)] = (pid, broker)
            else:
                pidfile.unlink(missing_ok=True)
        return found

    def running(self) -> dict[str, dict[int, int]]:
        """{pool: {index: pid}} of live workers."""
        return {pool: {i: pid for i, (pid, _) in w.items()} for pool, w in self._live().items()}

    def workers(self) -> dict[str, list[str]]:
        return {pool: [self.node(pool, i) for i in sorted(w)] for pool, w in self.running().items()}

    # -- start / stop
    def _start(self, pool: str, index: int) -> tuple[str, int]:
        argv = launch_argv(pool, f"%h-{index}", python=sys.executable)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile(pool, index), "ab") as logf:
            proc = subprocess.Popen(argv, cwd=PROJECT_DIR, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self._procs[proc.pid] = proc
        self._pidfile(pool, index).write_text(f"{proc.pid}\n{self._broker_id}\n")
        log.info("started %s (pid %d, log %s)", self.node(pool, index), proc.pid, self.logfile(pool, index))
        return self.node(pool, index), proc.pid

    def _signal(self, targets: list[Target], sig: int) -> None:
        for pool, index, pid in targets:
            log.info("%s %s (pid %d)", signal.Signals(sig).name, self.node(pool, index), pid)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _stop(self, targets: list[Target]) -> None:
        """Warm shutdown: SIGTERM, wait up to engine.stop_timeout for running tasks to finish, then SIGKILL."""
        timeout = self.settings.engine.stop_timeout
        self._signal(targets, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        pending = [t for t in targets if self._alive(t[2])]
        while pending and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a process state, not synchronising on time
            pending = [t for t in pending if self._alive(t[2])]
        if pending:
            log.warning("%d worker(s) did not stop within %.0fs: SIGKILL", len(pending), timeout)
            self._signal(pending, signal.SIGKILL)
        for pool, index, pid in targets:
            self._pidfile(pool, index).unlink(missing_ok=True)
            proc = self._procs.pop(pid, None)
            if proc is not None:
                proc.wait(timeout=timeout)

    def _start_all(self, plan: dict[str, int], running: dict[str, dict[int, int]], desired: dict[str, int]) -> None:
        started: dict[str, tuple[str, int, int]] = {}  # node name -> (pool, index, pid)
        for pool, delta in plan.items():
            if delta > 0:
                for i in indices_to_start(set(running[pool]), desired[pool]):
                    name, pid = self._start(pool, i)
                    started[name] = (pool, i, pid)
        if started:
            wait_for_pong(
                self.app,
                list(started),
                time.monotonic() + self.settings.engine.start_timeout,
                alive=lambda name: self._alive(started[name][2]),
                last_words=lambda name: last_line(self.logfile(*started[name][:2])),
            )

    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        check_sizes(desired, self.settings)
        stale = [(p, i, pid) for p, w in self._live().items() if p in desired
                 for i, (pid, broker) in w.items() if broker != self._broker_id]  # fmt: skip
        if stale:
            log.warning("restarting %d worker(s) started for another broker/vhost", len(stale))
            self._stop(stale)
        running = self.running()
        plan = scale_plan({p: len(w) for p, w in running.items()}, desired)
        to_stop = [(pool, i, running[pool][i]) for pool, delta in plan.items() if delta < 0
                   for i in indices_to_stop(set(running[pool]), desired[pool])]  # fmt: skip
        if to_stop:
            self._stop(to_stop)
        self._start_all(plan, running, desired)
        return plan

    def start(self) -> dict[str, int]:
        return self.resize(declared_sizes(self.settings))

    def stop(self) -> dict[str, int]:
        return self.resize({name: 0 for name in self.settings.pools})

    def logs(self, lines: int, follow: bool) -> None:
        files = [str(self.logfile(pool, i)) for pool, w in self.running().items() for i in sorted(w)]
        if not files:
            log.warning("no local workers are running (`make up` starts them)")
            return
        subprocess.run(["tail", "-n", str(lines), *(["-F"] if follow else []), *files], check=False)
