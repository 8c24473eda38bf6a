"""Shared by the tests (imported as `helpers`; conftest.py only defines fixtures)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROKER_HOST = os.environ.get("DTS_TEST_BROKER_HOST", "localhost")
CHECKOUT = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]  # two checkouts' test runs never share a vhost
TEST_VHOST = f"dts-test-{CHECKOUT}"
IDLE_VHOST = f"dts-test-idle-{CHECKOUT}"  # a vhost where no worker ever runs
TEST_BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:5672/{TEST_VHOST}"
IDLE_BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:5672/{IDLE_VHOST}"
IN_CI = os.environ.get("CI", "").lower() == "true"


def vhost_url(vhost: str, user: str = "guest", password: str = "guest") -> str:
    return f"amqp://{user}:{password}@{BROKER_HOST}:5672/{vhost}"


def write_config(path: Path, **overrides: str) -> Path:
    """A config for tests: seed durations, fast deterministic backoff (no jitter), local engine.
    `queue_a` / `queue_b` rename the queues (tasks and pools follow)."""
    v = {
        "duration_a": "0.1",
        "duration_b": "0.2",
        "failure_rate": "0.0",
        "max_retries": "3",
        "backoff_base": "0.05",
        "replicas": "2",
        "timeout": "30",
        "stop_timeout": "30",
        "queue_a": "queue_a",
        "queue_b": "queue_b",
        "task_events": "true",
    }
    v.update(overrides)
    path.write_text(
        textwrap.dedent(f"""\
        name: Integration test config
        broker:
          url: {TEST_BROKER_URL}
          connect_timeout: 5
        pools:
          worker-a: {{queues: [{v["queue_a"]}], replicas: {v["replicas"]}, concurrency: 1}}
          worker-b: {{queues: [{v["queue_b"]}], replicas: {v["replicas"]}, concurrency: 1}}
        tasks:
          task_a: {{queue: {v["queue_a"]}, duration: {v["duration_a"]}, failure_rate: {v["failure_rate"]}}}
          task_b: {{queue: {v["queue_b"]}, duration: {v["duration_b"]}, failure_rate: {v["failure_rate"]}}}
        retry: {{max_retries: {v["max_retries"]}, backoff_base: {v["backoff_base"]}, backoff_max: 1.0, jitter: false}}
        engine:
          name: local
          stop_timeout: {v["stop_timeout"]}
          start_timeout: 60
        dispatch:
          timeout: {v["timeout"]}
        monitoring:
          task_events: {v["task_events"]}
        """)
    )
    return path


# --------------------------------------------------------------------------- the versions the tests run on

TESTED_VERSIONS = ROOT / "docs" / "samples" / "tested-versions.json"  # the docs' table is drawn from it


def versions_tested() -> dict:
    """docs/samples/tested-versions.json: each RabbitMQ line and Compose with the exact version the tests run on
    and the test modules (all their tests, or the ones named) that run on it."""
    return json.loads(TESTED_VERSIONS.read_text())


def module_name(path: str | Path) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def lines_running(module: str, test: str) -> list[str]:
    """The RabbitMQ lines on which tested-versions.json says `test` of `module` (tests/NAME.py) runs."""
    lines = []
    for line, entry in versions_tested()["rabbitmq"].items():
        scope = entry["tests"].get(module)
        if scope == "all" or (isinstance(scope, list) and test in scope):
            lines.append(line)
    return lines


def parametrize_by_line(metafunc, fixture: str) -> None:
    """For a module's pytest_generate_tests: its module-scoped `fixture` (request.param: a RabbitMQ line)
    given the lines tested-versions.json names for each test, so the docs' table is what runs."""
    if fixture in metafunc.fixturenames:
        lines = lines_running(module_name(metafunc.module.__file__), metafunc.function.__name__)
        metafunc.parametrize(fixture, lines, indirect=True, scope="module")


def check_rabbitmq_version(line: str, reported: str) -> None:
    """The broker of RabbitMQ line `line` reported (`rabbitmqctl version`) the version the docs' table names."""
    expected = versions_tested()["rabbitmq"][line]["version"]
    assert reported.strip() == expected, (
        f"RabbitMQ {line} here is {reported.strip()!r}, but {module_name(TESTED_VERSIONS)} (the docs' table of "
        f"tested versions) says {expected}: rebuild the image or, if this is the version to test, update the file"
    )


def check_compose_version() -> str:
    """The Compose the engine picks (`docker compose` unless DTS_COMPOSE says otherwise) reports the version the
    docs' table names for it; returns its name. Outside CI another version skips (a developer's own Docker)."""
    from dts.engines.docker import COMPOSES, compose_command

    argv = compose_command()
    assert argv is not None, "no compose answers"
    name = next(n for n, a in COMPOSES.items() if a == argv)
    reported = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=60).stdout.strip()
    expected = versions_tested()["compose"][name]["version"]
    if reported != expected:
        why = f"`{name}` here is {reported!r}, not {expected} as {module_name(TESTED_VERSIONS)} (the docs' table) says"
        if IN_CI:
            pytest.fail(f"CI=true and {why}: install that one (.ci/install-docker.sh), or update the file")
        pytest.skip(f"{why}: CI runs on that one")
    return name


def compose_problem() -> str | None:
    """Why the container tests cannot run here (no Docker engine, no compose to build the image), or None."""
    from dts.engines.docker import compose_command, docker_answers

    if not docker_answers():
        return "no Docker engine answers (`docker info` failed); install and start one (.ci/install-docker.sh)"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


def need_engine(problem: str | None) -> None:
    """Skip for a missing Docker engine; under CI=true, fail (.ci/install-docker.sh starts one)."""
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem} (.ci/install-docker.sh should have started one)")
        pytest.skip(problem)


def current_image() -> str:
    """The worker image of this checkout as it is now (`<project>-worker:<version>-<content hash>`): a fixed
    tag would keep an image built from older code."""
    from dts.engines.image import worker_image

    return worker_image(ROOT, {})


def build_images(env: dict[str, str], *scripts: str, timeout: float = 900) -> None:
    """Run the project's image build scripts (scripts/build-*.sh) with `env`; a failed build fails the test."""
    for script in scripts:
        build = subprocess.run(
            ["sh", script], cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=timeout
        )
        assert build.returncode == 0, build.stdout + build.stderr


def broker_answers(host: str = BROKER_HOST, port: int = 5672) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def app_for(settings):
    """A Celery app of its own for these settings (another vhost than the session's app)."""
    from celery import Celery

    from dts.app.conf import celery_settings

    app = Celery("celery_app")
    app.conf.update(celery_settings(settings))
    return app


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """A project script as a subprocess from the project directory (env: extra variables)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_pty(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    """A project script with a pseudo-terminal as stdin/stdout/stderr (as a person at a terminal runs it),
    without CI=true. Returns the exit code and everything it wrote."""
    import pty
    import select

    child_env = {k: v for k, v in os.environ.items() if k != "CI"}
    child_env.update({"TERM": "xterm-256color", "COLUMNS": "200", **(env or {})})
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=child_env, stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"{args} wrote nothing for {timeout}s; output so far: {b''.join(chunks)!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def json_lines(text: str) -> list[dict]:
    """Every line of `text` as a JSON object (fails on the first line that is not one)."""
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {n} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "event", "logger"} <= record.keys(), line
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() == timedelta(0), line  # ISO 8601, UTC
        records.append(record)
    assert records, "no log lines at all"
    return records


def free_port() -> int:
    from dts.testing import free_port as the_os_choice

    return the_os_choice()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_node_port() -> int:
    """A free port P below 45536 whose P + 20000 is free too: a RabbitMQ node's AMQP and distribution ports
    (an ephemeral port from free_port() may be above 45535, and P + 20000 then is no port)."""
    import random

    for _ in range(100):
        port = random.randrange(10000, 45000)
        if port_is_free(port) and port_is_free(port + 20000):
            return port
    raise RuntimeError("no free port pair for a RabbitMQ node")


def http_get(url: str, login: tuple[str, str] | None = None) -> tuple[int, str]:
    """(HTTP status, body) of a GET, with basic auth when a login is given."""
    req = urllib.request.Request(url)
    if login:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def fresh_vhost(vhost: str, user: str = "guest", password: str | None = None) -> None:
    """A vhost of the tests, emptied: deleted if it exists (its queues may have been declared by an older
    checkout, with other arguments), then created with `user`'s permissions."""
    from dts.provision import ensure_vhost, rabbitmqctl

    if vhost in rabbitmqctl("list_vhosts", "name").stdout.split():
        rabbitmqctl("delete_vhost", vhost)
    ensure_vhost(vhost, user, password)


# the vhosts and users the tests make: `dts-<what>-<checkout>[-<more>]`; a project's own is `dts-<hash>`
TEST_NAME = re.compile(r"^dts-[a-z][\w-]*?-(?P<checkout>[0-9a-f]{8})(-[\w-]+)?$")


def made_by_tests(names: list[str], checkout: str | None = None) -> list[str]:
    """The names among `names` that the tests made: of one checkout's runs, or of any when `checkout` is None
    (never a project's own `dts-<hash>`, never another name)."""
    found = [(n, TEST_NAME.match(n)) for n in names]
    return [n for n, m in found if m and checkout in (None, m["checkout"])]


def forget_test_names(checkout: str | None = None) -> list[str]:
    """Delete the vhosts and users the tests made on the host's RabbitMQ (made_by_tests): a broker keeps every
    vhost and recovers each one when it starts, so vhosts left by past runs make it start slower and slower.
    Returns what was deleted; nothing when no broker answers or rabbitmqctl cannot be run here."""
    from dts.errors import CliError
    from dts.provision import rabbitmqctl

    if not broker_answers():
        return []
    deleted = []
    try:
        for listing, delete in (("list_vhosts", "delete_vhost"), ("list_users", "delete_user")):
            names = [line.split("\t")[0] for line in rabbitmqctl(listing).stdout.splitlines()]
            for name in made_by_tests(names, checkout):
                rabbitmqctl(delete, name)
                deleted.append(name)
    except CliError:
        pass  # rabbitmqctl needs root or the rabbitmq user; without it the tests made no vhosts either
    return deleted


@contextlib.contextmanager
def local_fleet(path: Path, broker_url: str, run_dir: Path):
    """Real local workers for the config at `path` on `broker_url` (each pool at its replicas), stopped after:
    yields (settings, app, engine)."""
    from dts.config import load_settings
    from dts.testing import local_workers

    settings = load_settings(path).with_broker_url(broker_url)
    app = app_for(settings)
    try:
        with local_workers(settings, app, run_dir) as engine:
            yield settings, app, engine
    finally:
        app.close()


def executions(run_dir: Path, task_ids, settle: float = 5.0) -> dict[str, int]:
    """How often each task ran to success, counted in every local worker's log (a duplicate shows twice).
    supervisord writes a worker's output to its log through a pipe, so a line can land just after the
    result reached the client: read again until every task has its line, or `settle` seconds pass."""
    import re

    deadline = time.monotonic() + settle
    while True:
        text = "".join(p.read_text(errors="replace") for p in Path(run_dir).glob("*.log"))
        counts = {tid: len(re.findall(rf"\[{tid}\] succeeded in", text)) for tid in task_ids}
        if all(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)  # polling the log files for a condition, bounded by the deadline


# --------------------------------------------------------------------------- a RabbitMQ node of a test's own

RABBITMQ_SERVER = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"


def require_rabbitmq_server(why: str) -> None:
    """Skip (fail under CI=true) when rabbitmq-server is not installed."""
    if not Path(RABBITMQ_SERVER).exists() or shutil.which("rabbitmqctl") is None:
        reason = f"rabbitmq-server is not installed here ({why})"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@dataclass
class PrivateBroker:
    """A RabbitMQ node started by a test (own name, ports and data directory), managed with rabbitmqctl -n."""

    node: str
    url: str
    env: dict[str, str]
    pidfile: Path
    base: Path

    def ctl(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(["rabbitmqctl", "-n", self.node, *args], capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def stop(self) -> None:
        self.ctl("stop_app")

    def start(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup")

    def connections(self) -> int:
        return len([line for line in self.ctl("list_connections", "-q", "pid").splitlines() if line.strip()])

    def shutdown(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def start_node(node: str, port: int, conf: str = "", prepare=None) -> PrivateBroker:
    """Start RabbitMQ node `node` with AMQP on `port` (distribution on port + 20000) in a fresh directory,
    with `conf` as its rabbitmq.conf ("{base}" in it: that directory); `prepare(base)` may put files there
    first (certificates). Returns once the node is up. As root the server drops to the rabbitmq user: the whole directory is chowned to it."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix=f"{node.split('@')[0]}-"))
    if prepare:
        prepare(base)
    (base / "rabbitmq.conf").write_text(conf.replace("{base}", str(base)))
    env = dict(
        os.environ,
        RABBITMQ_NODENAME=node,
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(port + 20000),
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_PID_FILE=str(base / "pid"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
    )
    if os.geteuid() == 0:  # the server drops to the rabbitmq user: it must read (and write) all of base
        user = pwd.getpwnam("rabbitmq")
        for path in [base, *base.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run([RABBITMQ_SERVER, "-detached"], env=env, cwd=base, check=True, capture_output=True, timeout=60)
    broker = PrivateBroker(node, f"amqp://guest:guest@localhost:{port}//", env, base / "pid", base)
    broker.ctl("wait", str(broker.pidfile), "--timeout", "90", timeout=120)
    return broker


# --------------------------------------------------------------------------- runs with faults in them


def popen_cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    """A project script started in the background (env: extra variables), its stdout and stderr piped; with
    PYTHONFAULTHANDLER, so that `finish` can show where one hangs."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONFAULTHANDLER="1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, what: str, timeout: float = 30) -> tuple[str, str]:
    """The CLI's output once it exits; one that is still running after `timeout` is a failure that shows
    where it hangs (SIGABRT: PYTHONFAULTHANDLER dumps every thread's stack on stderr)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stderr = proc.communicate()[1]
        raise AssertionError(f"{what} hung past its deadline:\n{stderr}") from None


def ended_for_the_broker(proc: subprocess.Popen, stdout: str, stderr: str, prog: str, cause: str) -> None:
    """Exit 3, no traceback, and a last line on stderr that is `prog`'s one error line naming `cause`."""
    assert proc.returncode == 3, stdout + stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    last = stderr.splitlines()[-1]
    assert last.startswith(f"{prog}: error: ") and cause in last, last


def wait_for_line(stream, pattern: str) -> re.Match:
    """Read `stream` until a line matches (pytest-timeout bounds the wait)."""
    seen = []
    for line in stream:
        match = re.search(pattern, line)
        if match:
            return match
        seen = [*seen[-19:], line]
    raise AssertionError(f"the output ended without a line matching {pattern!r}; its last lines:\n{''.join(seen)}")


def tally(samples: list[dict], run_dir: Path) -> dict[str, int]:
    runs = executions(run_dir, [s["task_id"] for s in samples])
    states = [s["state"] for s in samples]
    return {
        "sent": len(samples),
        "completed": states.count("succeeded"),
        "failed": states.count("failed"),
        "unknown": states.count("unknown"),
        "lost": sum(1 for s in samples if s["state"] == "succeeded" and runs[s["task_id"]] == 0),
        "duplicates": sum(max(0, n - 1) for n in runs.values()),
    }


def compose_leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes compose made for the project (by its label)."""
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind in ("container", "network", "volume"):
        argv = ["docker", kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", label]
        found[kind] = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split()
    return found


@contextlib.contextmanager
def compose_broker_stack(cfg_path: Path, name: str, rabbitmq: str | None = None, extra_env: dict | None = None):
    """The compose `broker` service (of the RabbitMQ line `rabbitmq`: None, the default) with the pools of
    `cfg_path` as containers, from `scale.py up --broker compose`, in a compose project, vhost, user and free
    port of its own; yields {env, engine, app, project}; then everything removed (data volume included)."""
    need_engine(compose_problem())
    from dts.config import load_settings
    from dts.engines.compose import ComposeEngine
    from dts.engines.image import DEFAULT_RABBITMQ

    cfg_path.chmod(0o644)  # read by the container's unprivileged user through the bind mount
    cfg_path.parent.chmod(0o755)
    project, port = f"dts-{name}-{os.getpid()}", free_port()
    vhost = user = f"dts-{name}-{CHECKOUT}-{os.getpid()}"
    password = secrets.token_hex(12)
    env = {
        "DTS_BROKER_USER": user,
        "DTS_BROKER_PASSWORD": password,
        "DTS_BROKER_VHOST": vhost,
        "DTS_BROKER_PORT": str(port),
        "BROKER_URL": f"amqp://{user}:{password}@127.0.0.1:{port}/{vhost}",
        "DTS_CONFIG": str(cfg_path),
        "COMPOSE_PROJECT_NAME": project,
        "DTS_IMAGE": current_image(),
        "PY": sys.executable,
        **({"RABBITMQ": rabbitmq} if rabbitmq else {}),
        **(extra_env or {}),  # e.g. DTS_BROKER_IMAGE: a broker image of the test's own
    }
    build_images(env, "scripts/build-broker-image.sh", "scripts/build-image.sh")  # both cached by tag / layers
    settings = load_settings(cfg_path).with_broker_url(env["BROKER_URL"])
    app = app_for(settings)
    line, options = (("--rabbitmq", rabbitmq), {"rabbitmq": rabbitmq}) if rabbitmq else ((), {})
    engine = ComposeEngine(settings, app, project=project, env=env, broker="compose", **options)
    try:
        check_compose_version()
        up = run_cli("scale.py", "up", "--engine", "compose", "--broker", "compose", *line, env=env, timeout=400)
        assert up.returncode == 0, up.stdout + up.stderr
        (cid,) = engine.containers("broker")
        version = subprocess.run(["docker", "exec", cid, "rabbitmqctl", "-q", "version"], capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        check_rabbitmq_version(rabbitmq or DEFAULT_RABBITMQ, version.stdout)
        yield {"env": env, "engine": engine, "app": app, "project": project}
    finally:
        logs = subprocess.run([*engine.cmd, "logs", "--tail", "20"], env=engine.env, capture_output=True, text=True)
        print(logs.stdout[-4000:])
        app.close()
        argv = ("scale.py", "down", "--engine", "compose", "--broker", "compose", *line, "--volumes")
        down = run_cli(*argv, env=env, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        assert compose_leftovers(project) == {"container": [], "network": [], "volume": []}
