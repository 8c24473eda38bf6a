"""Worker pools: how many workers each pool has and how to change that.

Two back ends with the same interface (scale, up, down, workers, counts):
- LocalPool: real `celery worker` processes (the same command line as the containers), pid and log files
  under .run/;
- ComposePool: replicas of the docker compose services worker-a / worker-b.
Used by scale.py (`up`, `down`, scaling), load_test.py and the tests.

    pool = LocalPool(config)
    pool.scale({"worker-a": 3})        # start/stop processes, return when the new ones answer ping
    pool.running()                     # {"worker-a": {1: pid, 2: pid, 3: pid}, "worker-b": {...}}
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery.utils.nodenames import host_format

from broker import redact_url
from celery_app import PROJECT_DIR, CliError, Config, ExitCode, app, checkout_name, worker_argv, worker_nodename

log = logging.getLogger("dts.pools")
RUN_DIR = Path(os.environ.get("DTS_RUN_DIR") or PROJECT_DIR / ".run")  # pid and log files of local workers


# --------------------------------------------------------------------------- pure plan


def scale_plan(current: dict[str, int], desired: dict[str, int]) -> dict[str, int]:
    """Workers to add (>0) or remove (<0) per pool: desired - current, for the pools named in desired."""
    return {pool: count - current.get(pool, 0) for pool, count in desired.items()}


def indices_to_start(existing: set[int], count: int) -> list[int]:
    """Lowest free worker indices (1-based) so that `count` workers exist."""
    free = (i for i in range(1, count + len(existing) + 1) if i not in existing)
    return [next(free) for _ in range(max(0, count - len(existing)))]


def indices_to_stop(existing: set[int], count: int) -> list[int]:
    """Highest indices first, so that `count` workers remain."""
    return sorted(existing, reverse=True)[: max(0, len(existing) - count)]


def validate_count(pool: str, count: int, config: Config) -> None:
    if pool not in config.pools:
        raise CliError(f"unknown pool {pool!r}: use one of {', '.join(config.pools)}", ExitCode.USAGE)
    if not 0 <= count <= config.max_workers:
        raise CliError(
            f"{pool}: count must be between 0 and workers.max_workers={config.max_workers} (got {count}); "
            f"raise workers.max_workers in {config.path.name} for more",
            ExitCode.USAGE,
        )


# --------------------------------------------------------------------------- ping


def wait_for_pong(
    names: list[str], deadline: float, alive=lambda name: True, app=app, last_words=lambda name: ""
) -> None:
    """Poll `celery inspect ping` until every node in `names` answered, `alive` says one died, or the
    deadline passes (CliError). `last_words(name)` is the dead worker's last log line, for the error."""
    waiting = set(names)
    while waiting:
        replies = app.control.ping(destination=sorted(waiting), timeout=0.5) or []
        for reply in replies:
            waiting -= set(reply)
        dead = [name for name in waiting if not alive(name)]
        if dead:
            said = last_words(dead[0])
            raise CliError(
                f"worker {dead[0]} exited during start-up" + (f" ({said})" if said else "") + "; see `make logs`"
            )
        if waiting and time.monotonic() > deadline:
            raise CliError(
                f"{len(waiting)} worker(s) did not answer ping in time ({', '.join(sorted(waiting))}); "
                "see `make logs`, or raise workers.start_timeout"
            )


# --------------------------------------------------------------------------- local back end


class LocalPool:
    """Workers as local `celery worker` processes, tracked by pid files in run_dir."""

    mode = "local"

    def __init__(self, config: Config, run_dir: Path = RUN_DIR, env: dict[str, str] | None = None, app=app):
        self.config, self.app = config, app
        self.run_dir = Path(run_dir)
        self.env = dict(os.environ if env is None else env)
        self.env.update({"DTS_CONFIG": str(config.path), "BROKER_URL": config.broker_url})
        self._procs: dict[int, subprocess.Popen] = {}
        self._broker_id = redact_url(config.broker_url)

    # -- files
    def _pidfile(self, pool: str, index: int) -> Path:
        return self.run_dir / f"{pool}-{index}.pid"

    def logfile(self, pool: str, index: int) -> Path:
        return self.run_dir / f"{pool}-{index}.log"

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
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # guard against a recycled pid; a zombie has an empty cmdline
            return b"celery_app" in cmdline.read_bytes()
        return True

    def _live(self) -> dict[str, dict[int, tuple[int, str]]]:
        """{pool: {index: (pid, broker it was started for)}} of live workers, read from the pid files
        (`pid` line, then the redacted broker URL); stale pid files are removed."""
        found: dict[str, dict[int, tuple[int, str]]] = {pool: {} for pool in self.config.pools}
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

    def stale(self) -> list[tuple[str, int, int]]:
        """Live workers started for another broker URL or vhost than the current config's."""
        return [
            (pool, index, pid)
            for pool, workers in self._live().items()
            for index, (pid, broker) in workers.items()
            if broker != self._broker_id
        ]

    def counts(self) -> dict[str, int]:
        return {pool: len(workers) for pool, workers in self.running().items()}

    def nodename(self, pool: str, index: int) -> str:
        return host_format(worker_nodename(pool, index))

    # -- start / stop
    def _start(self, pool: str, index: int) -> tuple[str, int]:
        spec = self.config.pools[pool]
        argv = worker_argv(spec, worker_nodename(pool, index), self.config.prefetch_multiplier)
        argv = [sys.executable, "-m", *argv]  # the same command, from this interpreter's environment
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile(pool, index), "ab") as logf:
            proc = subprocess.Popen(
                argv, cwd=PROJECT_DIR, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._procs[proc.pid] = proc
        self._pidfile(pool, index).write_text(f"{proc.pid}\n{self._broker_id}\n")
        log.info("started %s (pid %d, log %s)", self.nodename(pool, index), proc.pid, self.logfile(pool, index))
        return self.nodename(pool, index), proc.pid

    def _stop(self, targets: list[tuple[str, int, int]]) -> None:
        """Warm shutdown: SIGTERM, wait up to stop_timeout for running tasks to finish, then SIGKILL."""
        for pool, index, pid in targets:
            log.info("stopping %s (pid %d, SIGTERM)", self.nodename(pool, index), pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.stop_timeout
        pending = list(targets)
        while pending:
            pending = [t for t in pending if self._alive(t[2])]
            if pending and time.monotonic() > deadline:
                for pool, index, pid in pending:
                    log.warning(
                        "%s did not stop within %.0fs: SIGKILL", self.nodename(pool, index), self.config.stop_timeout
                    )
                    os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
                continue
            if pending:
                time.sleep(0.05)  # polling a process state, not synchronising on time
        for pool, index, pid in targets:
            self._pidfile(pool, index).unlink(missing_ok=True)
            proc = self._procs.pop(pid, None)
            if proc is not None:
                proc.wait()

    def scale(self, desired: dict[str, int]) -> dict[str, int]:
        """Bring each named pool to its desired size; returns the change per pool."""
        for pool, count in desired.items():
            validate_count(pool, count, self.config)
        stale = [t for t in self.stale() if t[0] in desired]
        if stale:
            log.warning("restarting %d worker(s) started for another broker/vhost", len(stale))
            self._stop(stale)
        running = self.running()
        plan = scale_plan({p: len(w) for p, w in running.items()}, desired)
        to_stop = [
            (pool, i, running[pool][i])
            for pool, delta in plan.items() if delta < 0
            for i in indices_to_stop(set(running[pool]), desired[pool])
        ]  # fmt: skip
        if to_stop:
            self._stop(to_stop)
        started: dict[str, tuple[str, int, int]] = {}  # node name -> (pool, index, pid)
        for pool, delta in plan.items():
            if delta > 0:
                for i in indices_to_start(set(running[pool]), desired[pool]):
                    name, pid = self._start(pool, i)
                    started[name] = (pool, i, pid)
        if started:
            wait_for_pong(
                list(started),
                time.monotonic() + self.config.start_timeout,
                alive=lambda name: self._alive(started[name][2]),
                app=self.app,
                last_words=lambda name: _last_line(self.logfile(*started[name][:2])),
            )
        return plan

    def up(self) -> dict[str, int]:
        return self.scale({name: spec.replicas for name, spec in self.config.pools.items()})

    def down(self) -> dict[str, int]:
        return self.scale({name: 0 for name in self.config.pools})

    def workers(self) -> dict[str, list[str]]:
        return {pool: [self.nodename(pool, i) for i in sorted(w)] for pool, w in self.running().items()}

    def logs(self, lines: int, follow: bool) -> None:
        """Print (or follow) the logs of the running workers."""
        files = [str(self.logfile(pool, i)) for pool, w in self.running().items() for i in sorted(w)]
        if not files:
            print("no local workers are running (`make up` starts them)")
            return
        subprocess.run(["tail", "-n", str(lines), *(["-F"] if follow else []), *files], check=False)


# --------------------------------------------------------------------------- docker compose back end


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when the plugin exists, else `docker-compose` (v1.29), else None."""
    if shutil.which("docker") and _quiet(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def engine_answers(timeout: float = 10) -> bool:
    return bool(shutil.which("docker")) and _quiet(["docker", "info"], timeout)


def _quiet(argv: list[str], timeout: float = 10) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_env(config: Config) -> dict[str, str]:
    """Variables docker-compose.yml substitutes, from the config (so both back ends run the same command)."""
    return {
        "DTS_WORKER_A_CONCURRENCY": str(config.pools["worker-a"].concurrency),
        "DTS_WORKER_B_CONCURRENCY": str(config.pools["worker-b"].concurrency),
        "DTS_WORKER_A_POOL": config.pools["worker-a"].pool,
        "DTS_WORKER_B_POOL": config.pools["worker-b"].pool,
        "DTS_PREFETCH": str(config.prefetch_multiplier),
        "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0"),  # legacy builder: no buildx needed
        "COMPOSE_DOCKER_CLI_BUILD": os.environ.get("COMPOSE_DOCKER_CLI_BUILD", "0"),
    }


class ComposePool:
    """Workers as docker compose service replicas (worker-a, worker-b) of one compose project."""

    mode = "docker"

    def __init__(self, config: Config, project: str | None = None, env: dict[str, str] | None = None, app=app):
        cmd = compose_command()
        if cmd is None:
            raise CliError(
                "neither `docker compose` nor `docker-compose` is installed; use WORKERS=local", ExitCode.USAGE
            )
        self.config, self.app = config, app
        self.project = project or os.environ.get("COMPOSE_PROJECT_NAME") or checkout_name()
        self.cmd = [*cmd, "-f", str(PROJECT_DIR / "docker-compose.yml"), "-p", self.project]
        self.env = {**os.environ, **compose_env(config), **(env or {})}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        log.info("%s %s", " ".join(self.cmd[:1] + self.cmd[-2:]), " ".join(args))
        proc = subprocess.run([*self.cmd, *args], cwd=PROJECT_DIR, env=self.env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise CliError(f"`compose {' '.join(args)}` failed: {last[0]}")
        return proc

    def containers(self, pool: str) -> list[str]:
        """Ids of the running (or crash-looping: restarting) containers of one service."""
        out = subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}",
             "--filter", f"label=com.docker.compose.service={pool}", "--filter", "status=running",
             "--filter", "status=restarting"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return out.stdout.split()

    def _named_containers(self, pool: str) -> dict[str, str]:
        """{worker-a@<container hostname>: container id} of the service's running containers."""
        ids = self.containers(pool)
        if not ids:
            return {}
        out = subprocess.run(["docker", "inspect", "-f", "{{.Config.Hostname}}", *ids],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        return {f"{pool}@{host}": cid for host, cid in zip(out.stdout.split(), ids, strict=False)}

    def _restarts(self, cid: str) -> int:
        """How often docker restarted the container (a crash during start-up shows here)."""
        out = subprocess.run(["docker", "inspect", "-f", "{{.RestartCount}}", cid], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    def _last_log_line(self, cid: str) -> str:
        out = subprocess.run(["docker", "logs", "--tail", "1", cid], capture_output=True, text=True)
        return (out.stdout + out.stderr).strip()[-300:]

    def workers(self) -> dict[str, list[str]]:
        """{pool: [worker-a@<container hostname>, ...]} of running containers."""
        return {pool: sorted(self._named_containers(pool)) for pool in self.config.pools}

    def counts(self) -> dict[str, int]:
        return {pool: len(names) for pool, names in self.workers().items()}

    def _check_credentials(self) -> None:
        from celery_app import read_env_file

        values = {**read_env_file(), **self.env}
        if not values.get("DTS_BROKER_PASSWORD"):
            raise CliError("no broker user for the containers (guest only works over loopback): run `make broker` "
                           "to create one and write it to .env", ExitCode.USAGE)  # fmt: skip

    def build(self) -> None:
        self.compose("build")

    def logs(self, lines: int, follow: bool) -> None:
        """Print (or follow) the containers' logs."""
        subprocess.run([*self.cmd, "logs", "--tail", str(lines), *(["-f"] if follow else [])], cwd=PROJECT_DIR,
                       env=self.env, check=False)  # fmt: skip

    def scale(self, desired: dict[str, int], recreate: bool = False) -> dict[str, int]:
        """Resize services. Existing replicas are kept as they are (--no-recreate) unless `recreate`,
        which lets compose replace containers whose image or config changed (what `up` wants)."""
        for pool, count in desired.items():
            validate_count(pool, count, self.config)
        self._check_credentials()
        plan = scale_plan(self.counts(), desired)
        # one call for all pools; compose stops surplus replicas with SIGTERM and waits stop_grace_period
        scales = [arg for pool, count in desired.items() for arg in ("--scale", f"{pool}={count}")]
        keep = [] if recreate else ["--no-recreate"]
        self.compose("up", "-d", *keep, *scales, *desired)
        ids = {name: cid for pool in desired for name, cid in self._named_containers(pool).items()}
        for pool, count in desired.items():
            have = sum(1 for name in ids if name.startswith(f"{pool}@"))
            if have != count:
                raise CliError(f"{pool}: compose runs {have} container(s), expected {count}; see `make logs`")
        restarts = {name: self._restarts(cid) for name, cid in ids.items()}
        wait_for_pong(
            list(ids),
            time.monotonic() + self.config.start_timeout,
            alive=lambda name: self._restarts(ids[name]) == restarts[name],
            app=self.app,
            last_words=lambda name: self._last_log_line(ids[name]),
        )
        return plan

    def up(self) -> dict[str, int]:
        return self.scale({name: spec.replicas for name, spec in self.config.pools.items()}, recreate=True)

    def down(self) -> dict[str, int]:
        before = self.counts()
        self.compose("down", "--remove-orphans", "--timeout", str(int(self.config.stop_timeout)))
        return {pool: -count for pool, count in before.items()}


def resolve_mode(mode: str) -> str:
    """auto -> docker when an engine answers and compose is installed, else local."""
    if mode != "auto":
        return mode
    return "docker" if engine_answers() and compose_command() else "local"


def make_backend(config: Config, mode: str, **kwargs):
    mode = resolve_mode(mode)
    if mode == "docker":
        if not engine_answers():
            raise CliError("no Docker engine answers (`docker info` failed): start one, or use WORKERS=local",
                           ExitCode.USAGE)  # fmt: skip
        return ComposePool(config, **kwargs)
    return LocalPool(config, **kwargs)
