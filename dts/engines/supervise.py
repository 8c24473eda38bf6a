"""supervisord for the local engine: one per run folder, started on demand, so that a local worker that
dies is restarted like a compose service with `restart: unless-stopped`.

    <run_dir>/supervisord.conf   one [program:<pool>-<n>] per worker (mode 0600: it holds the broker URL)
    <run_dir>/supervisord.log    supervisord's own log (starts, exits, restarts, SIGKILLs)
    <run_dir>/supervisor.sock    its control socket (mode 0700; under /tmp when the path would be too long)

`supervisorctl -c <run_dir>/supervisord.conf status` shows the workers. This module only renders the
file and talks to supervisord (XML-RPC over the unix socket); which workers to run is dts.engines.local's.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import logging
import shlex
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.xmlrpc import Faults, SupervisorTransport

from dts.errors import CliError, ExitCode
from dts.files import write_atomic

log = logging.getLogger("dts.supervise")  # the name users know from the log lines
CONF, LOG, PIDFILE, SOCKET, LOCK = (
    "supervisord.conf",
    "supervisord.log",
    "supervisord.pid",
    "supervisor.sock",
    ".supervisord.lock",
)
SOCKET_MAX = 100  # AF_UNIX paths are limited to 107 bytes on Linux
UP = frozenset({"STARTING", "RUNNING", "BACKOFF"})  # supervisor runs it or is bringing it (back) up
Program = dict[str, str]  # one [program:x] section: option -> value as written in the file (escaped)


def socket_path(run_dir: Path) -> Path:
    """<run_dir>/supervisor.sock, or /tmp/dts-supervisor-<hash>.sock when that path is too long."""
    path = Path(run_dir).resolve() / SOCKET
    if len(str(path)) <= SOCKET_MAX:
        return path
    digest = hashlib.sha1(str(path.parent).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dts-supervisor-{digest}.sock"


def escape(value: str) -> str:
    """A value for supervisor's config: it expands %(name)s in most options, so a literal % is %%."""
    return str(value).replace("%", "%%")


def env_option(env: dict[str, str]) -> str:
    """`environment=` for supervisor: KEY="value",... (supervisor's parser has no escapes for quotes)."""
    for key, value in env.items():
        if '"' in value:
            raise CliError(f"${key} contains a double quote, which supervisord's config cannot hold", ExitCode.USAGE)
    return ",".join(f'{key}="{escape(value)}"' for key, value in env.items())


def program_env(program: Program) -> dict[str, str]:
    """The environment a rendered program runs with (the inverse of env_option)."""
    raw = program.get("environment", "").replace("%%", "%")
    return dict_of_key_value_pairs(raw) if raw else {}


def program(
    argv: list[str],
    env: dict[str, str],
    directory: Path,
    logfile: Path,
    stop_timeout: float,
    log: tuple[int, int] = (10, 3),
) -> Program:
    """One worker under supervisord: restarted whenever it exits (like compose's `restart:`), stopped with
    SIGTERM to the celery main process only (warm shutdown: its pool processes finish their tasks), and
    after stopwaitsecs SIGKILLed with everything in its process group; its log rotated at `log` = (MB, files
    kept, the current one included)."""
    return {
        "command": escape(shlex.join(argv)),
        "directory": escape(str(directory)),
        "environment": env_option(env),
        "autostart": "true",
        "autorestart": "true",
        "startsecs": "1",  # up this long = RUNNING; an exit before that = BACKOFF (a failed start)
        "startretries": "3",
        "stopsignal": "TERM",
        "stopwaitsecs": str(max(1, round(stop_timeout))),
        "stopasgroup": "false",  # celery's pool processes die on SIGTERM: only the main process gets it
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": escape(str(logfile)),
        "stdout_logfile_maxbytes": f"{log[0]}MB",  # log = (MB per file, files kept): rotated, as the containers'
        "stdout_logfile_backups": str(log[1] - 1),
    }


class Supervisor:
    """The supervisord of one run folder."""

    def __init__(self, run_dir: Path, env: dict[str, str], cwd: Path):
        self.run_dir = Path(run_dir)
        self.conf = self.run_dir / CONF
        self.logfile = self.run_dir / LOG
        self.pidfile = self.run_dir / PIDFILE
        self.socket = socket_path(self.run_dir)
        self.env, self.cwd = env, cwd

    # -- the config file
    def programs(self) -> dict[str, Program]:
        """{name: options} of the programs in the config file (empty when there is none)."""
        parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
        try:
            parser.read_string(self.conf.read_text())
        except (OSError, configparser.Error):
            return {}
        return {s.split(":", 1)[1]: dict(parser[s]) for s in parser.sections() if s.startswith("program:")}

    def render(self, programs: dict[str, Program]) -> str:
        run_dir, socket = escape(str(self.run_dir)), escape(str(self.socket))
        head = {
            "unix_http_server": {"file": socket, "chmod": "0700"},
            "supervisord": {
                "logfile": escape(str(self.logfile)),
                "pidfile": escape(str(self.pidfile)),
                "childlogdir": run_dir,
                "directory": escape(str(self.cwd)),
                "identifier": f"dts-{escape(self.run_dir.name)}",
            },
            "rpcinterface:supervisor": {
                "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
            },
            "supervisorctl": {"serverurl": f"unix://{socket}"},
        }
        sections = [*head.items(), *((f"program:{name}", options) for name, options in sorted(programs.items()))]
        text = "; rendered by dts.engines.local (the local engine): one program per worker; edit test-config.yml, not this\n"
        for name, options in sections:
            text += f"\n[{name}]\n" + "".join(f"{key}={value}\n" for key, value in options.items())
        return text

    def write(self, programs: dict[str, Program]) -> None:
        """The config file, atomically, readable by its owner only (it holds the broker URL)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.conf, self.render(programs), mode=0o600)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One change at a time per run folder (two `scale.py` at once would both start supervisord)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / LOCK, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # -- talking to supervisord
    def rpc(self):
        transport = SupervisorTransport(serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def states(self) -> dict[str, dict] | None:
        """{name: process info} from supervisord; None when no supervisord answers on the socket."""
        if not self.socket.exists():
            return None
        try:
            return {info["name"]: info for info in self.rpc().getAllProcessInfo()}
        except (OSError, xmlrpc.client.Error):
            return None

    def ensure_running(self, timeout: float = 30) -> None:
        """Start supervisord (with no program) unless it answers; return when it does."""
        if self.states() is not None:
            return
        self.write({})
        self.socket.unlink(missing_ok=True)  # left by a supervisord that was killed
        argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)]
        # supervisord forks into the background and returns
        proc = subprocess.run(
            argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        said = (proc.stdout + proc.stderr).strip().splitlines()
        deadline = time.monotonic() + timeout
        while proc.returncode == 0 and time.monotonic() < deadline:
            if self.states() is not None:
                log.info("started supervisord (pid %s, %s)", self.pid(), self.conf)
                return
            time.sleep(0.05)  # polling the socket, not synchronising on time
        raise CliError(
            f"supervisord did not start ({said[-1] if said else f'see {self.logfile}'}); config {self.conf}",
            ExitCode.FAILED,
        )

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def apply(self, programs: dict[str, Program], added: list[str]) -> None:
        """Write the config and have supervisord add (and so start) the programs in `added`."""
        self.write(programs)
        server = self.rpc()
        server.reloadConfig()
        for name in added:
            server.addProcessGroup(name)

    def stop(self, names: list[str], timeout: float) -> None:
        """Stop the programs (stopsignal, then SIGKILL after their stopwaitsecs), all at once; wait; remove
        them from supervisord's active set."""
        server = self.rpc()
        for name in names:
            with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING, BAD_NAME: already stopped or gone
                server.stopProcess(name, False)
        deadline = time.monotonic() + timeout
        while True:
            states = self.states() or {}
            pending = [n for n in names if n in states and states[n]["statename"] in (*UP, "STOPPING")]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise CliError(
                    f"supervisord did not stop {', '.join(pending)} in time; see {self.logfile}", ExitCode.FAILED
                )
            time.sleep(0.05)  # polling process states, not synchronising on time
        for name in names:
            try:
                server.removeProcessGroup(name)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != Faults.BAD_NAME:
                    raise

    def shutdown(self, timeout: float = 30) -> None:
        """Stop supervisord itself (after its programs) and wait until its process is gone."""
        pid = self.pid()
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc().shutdown()
        deadline = time.monotonic() + timeout
        while pid and alive(pid):
            if time.monotonic() > deadline:
                raise CliError(f"supervisord (pid {pid}) did not exit; see {self.logfile}", ExitCode.FAILED)
            time.sleep(0.05)  # polling a process state, not synchronising on time
        log.info("supervisord stopped (pid %s)", pid)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
