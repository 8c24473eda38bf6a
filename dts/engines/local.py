"""The local engine: workers as `celery worker` processes on this host, started through the same entry
point as the containers (`python -m dts worker POOL`) and supervised by one supervisord per run folder
(dts.engines.supervise): a worker that dies is restarted, like a compose service's container.

The n-th worker of a pool is node `worker-a@<hostname>-<n>`, supervisord program `worker-a-<n>`, log file
`.run/worker-a-<n>.log`. The program's environment holds the broker URL it was started for, so workers
started for another broker are restarted. Config, socket and log of supervisord are in .run/ too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dts.config import Settings, project_dir
from dts.config import run_dir as project_run_dir
from dts.config.schema import code_folders
from dts.engines.base import (
    Engine,
    check_sizes,
    indices_to_start,
    indices_to_stop,
    scale_plan,
    wait_for_pong,
)
from dts.engines.supervise import UP, Supervisor, alive, program, program_env
from dts.errors import CliError
from dts.naming import launch_argv, nodename

log = logging.getLogger("dts.local")  # the name users know from the log lines
WORKER_ENV = (
    "DTS_CONFIG",
    "BROKER_URL",
    "LOG_FORMAT",
    "PYTHONPATH",
    "PATH",
)  # set per program; the rest comes from supervisord's


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def program_name(pool: str, index: int) -> str:
    return f"{pool}-{index}"


class LocalEngine(Engine):
    """Workers as local processes under supervisord."""

    name = "local"

    def __init__(self, settings: Settings, app, run_dir: Path | None = None, env: dict[str, str] | None = None):
        self.settings, self.app = settings, app
        self.project = project_dir(settings)  # the workers' working folder
        self.run_dir = Path(run_dir or project_run_dir(self.project))
        self.env = dict(os.environ if env is None else env)
        self.env.update({"DTS_CONFIG": str(settings.path), "BROKER_URL": settings.broker.url})
        paths = [str(folder.resolve()) for folder in code_folders(settings)]  # your own tasks' modules (code:)
        if paths:
            self.env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [self.env.get("PYTHONPATH")])])
        # this interpreter's folder first (a venv's bin/): a command task's `python3` or `pytest` is the one the
        # workers run on, as /opt/venv/bin is first in the worker image's PATH
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [self.env.get("PATH")])])
        self.supervisor = Supervisor(self.run_dir, self.env, self.project)

    # -- names and files
    def logfile(self, pool: str, index: int) -> Path:
        return self.run_dir / f"{pool}-{index}.log"

    def node(self, pool: str, index: int) -> str:
        from celery.utils.nodenames import host_format  # Celery: not loaded to build the command line

        return host_format(nodename(pool, f"%h-{index}"))

    def _index(self, name: str) -> tuple[str, int] | None:
        """'worker-a-3' -> ('worker-a', 3) for a declared pool, else None."""
        pool, _, index = name.rpartition("-")
        return (pool, int(index)) if pool in self.settings.pools and index.isdigit() else None

    def _program(self, pool: str, index: int) -> dict[str, str]:
        env = {key: self.env.get(key, "") for key in WORKER_ENV if key != "PYTHONPATH" or self.env.get(key)}
        argv = launch_argv(pool, f"%h-{index}", python=sys.executable)
        engine = self.settings.engine
        log = (engine.log_max_mb, engine.log_files)
        return program(argv, env, self.project, self.logfile(pool, index), engine.stop_timeout, log)

    def _mine(self, options: dict[str, str]) -> bool:
        """Started for this engine's broker (and config)?"""
        env = program_env(options)
        return (env.get("BROKER_URL"), env.get("DTS_CONFIG")) == (self.env["BROKER_URL"], self.env["DTS_CONFIG"])

    # -- what runs
    def running(self) -> dict[str, dict[int, int]]:
        """{pool: {index: pid}} of the workers supervisord reports RUNNING for this broker."""
        found: dict[str, dict[int, int]] = {pool: {} for pool in self.settings.pools}
        states = self.supervisor.states() or {}
        for name, options in self.supervisor.programs().items():
            info, where = states.get(name), self._index(name)
            if info and where and info["statename"] == "RUNNING" and self._mine(options):
                found[where[0]][where[1]] = info["pid"]
        return found

    def workers(self) -> dict[str, list[str]]:
        return {pool: [self.node(pool, i) for i in sorted(w)] for pool, w in self.running().items()}

    # -- start / stop
    def resize(self, desired: dict[str, int]) -> dict[str, int]:
        check_sizes(desired, self.settings)
        for name in (pool for pool, count in desired.items() if count):
            if self.settings.pools[name].devices or self.settings.pools[name].volumes:
                log.warning(
                    "pools.%s: devices and volumes apply to the container engines only; local workers are "
                    "processes of this host and open its own paths",
                    name,
                )
        with self.supervisor.lock():
            self._stop_unsupervised()
            return self._resize(desired)

    def _resize(self, desired: dict[str, int]) -> dict[str, int]:
        sv = self.supervisor
        states = sv.states()
        programs = sv.programs() if states is not None else {}  # no supervisord: none of them runs
        current: dict[str, dict[int, str]] = {pool: {} for pool in desired}
        drop, stale = [], []  # programs to stop and remove
        for name, options in programs.items():
            where = self._index(name)
            if where is not None and where[0] not in desired:
                continue
            if where is None:  # a worker of a pool the config no longer declares
                drop.append(name)
            elif states.get(name, {}).get("statename") not in UP:  # exited for good (FATAL) or stopped
                drop.append(name)
            elif not self._mine(options) and desired[where[0]] > 0:  # to 0: stopped and counted below
                stale.append(name)
            else:
                current[where[0]][where[1]] = name
        if stale:
            log.warning("restarting %d worker(s) started for another broker/vhost or config", len(stale))
        plan = scale_plan({pool: len(w) for pool, w in current.items()}, desired)
        to_stop = [
            current[pool][i]
            for pool, delta in plan.items()
            if delta < 0
            for i in indices_to_stop(set(current[pool]), desired[pool])
        ]
        if drop or stale or to_stop:
            self._stop(drop + stale + to_stop, states)
        programs = {name: options for name, options in programs.items() if name not in {*drop, *stale, *to_stop}}
        added = {
            self.node(pool, i): (pool, i)
            for pool, delta in plan.items()
            if delta > 0
            for i in indices_to_start(set(current[pool]), desired[pool])
        }
        programs.update({program_name(*where): self._program(*where) for where in added.values()})
        if not programs:
            if states is not None:
                sv.write({})
                sv.shutdown()  # the last worker is gone: nothing is left running
            return plan
        sv.ensure_running()
        sv.apply(programs, [program_name(*where) for where in added.values()])
        for node, (pool, index) in added.items():
            log.info("started %s (program %s, log %s)", node, program_name(pool, index), self.logfile(pool, index))
        if added:
            self._wait_started(added)
        return plan

    def _wait_started(self, added: dict[str, tuple[str, int]]) -> None:
        """Every new worker answers ping, then supervisord counts it RUNNING (up for its startsecs)."""
        deadline = time.monotonic() + self.settings.engine.start_timeout

        def state(node: str) -> str:
            return (self.supervisor.states() or {}).get(program_name(*added[node]), {}).get("statename", "GONE")

        def last_words(node: str) -> str:
            return last_line(self.logfile(*added[node]))

        starting = ("STARTING", "RUNNING")
        wait_for_pong(
            self.app, list(added), deadline, alive=lambda node: state(node) in starting, last_words=last_words
        )
        for node in added:
            while (now := state(node)) != "RUNNING":
                if now not in starting or time.monotonic() > deadline:
                    said = last_words(node)
                    raise CliError(
                        f"worker {node} is {now} in supervisord, not RUNNING"
                        + (f" ({said})" if said else "")
                        + "; see `dts logs`"
                    )
                time.sleep(0.05)  # polling a process state, not synchronising on time

    def _stop(self, names: list[str], states: dict[str, dict] | None) -> None:
        """Warm shutdown: SIGTERM, wait up to engine.stop_timeout for running tasks to finish (supervisord
        then SIGKILLs), and remove the programs from supervisord."""
        for name in names:
            info = (states or {}).get(name, {})
            if info.get("statename") in UP and (where := self._index(name)):
                log.info("SIGTERM %s (pid %d)", self.node(*where), info.get("pid", 0))
        self.supervisor.stop(names, self.settings.engine.stop_timeout + 15)

    def _stop_unsupervised(self) -> None:
        """Workers an earlier version of this engine started without supervisord (pid files in the run
        folder): warm-stop them once, so they neither keep consuming nor clash with supervised node names."""
        targets = []
        for pidfile in sorted(self.run_dir.glob("*.pid")):
            if pidfile.name == self.supervisor.pidfile.name:
                continue
            try:
                pid = int(pidfile.read_text().split()[0])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                cmdline = b""
            if b"dts.worker" in cmdline or b"dts.app" in cmdline or b"celery_app" in cmdline:
                targets.append(pid)
                os.kill(pid, signal.SIGTERM)
            pidfile.unlink(missing_ok=True)
        deadline = time.monotonic() + self.settings.engine.stop_timeout
        while any(alive(pid) for pid in targets) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a process state, not synchronising on time
        for pid in targets:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        if targets:
            log.warning("stopped %d worker(s) started without supervisord", len(targets))

    def stop(self, volumes: bool = False) -> dict[str, int]:
        """Every worker stopped (and supervisord with the last one); a local engine keeps no data volume."""
        return self.resize({name: 0 for name in self.settings.pools})

    def logs(self, lines: int, follow: bool) -> None:
        files = [str(self.logfile(pool, i)) for pool, w in self.running().items() for i in sorted(w)]
        if not files:
            log.warning("no local workers are running (`make up` starts them)")
            return
        subprocess.run(["tail", "-n", str(lines), *(["-F"] if follow else []), *files], check=False)
