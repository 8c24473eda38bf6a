"""The workers' RabbitMQ vhost and user: created once, credentials written to the project's git-ignored
`.env` (what `dts broker` and `dts up` do, dts.cli.broker).

    provision(project / ".env")                # idempotent: the vhost and user, created when .env has none
    provision_compose(project / ".env")        # for the compose `broker` service: only .env (it makes them)
    ensure_vhost("dts-test", "guest")          # a vhost for the tests, with permissions for an existing user

Containers cannot log in as `guest` (loopback only), so they use this dedicated user; its vhost is named
after the folder .env is in, the project (`dts-<hash>`), so two projects never share queues or credentials.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import quote

from kombu import Connection

from dts.amqp.checks import START_HINT, redact_url
from dts.amqp.deadline import close_quietly
from dts.config import broker_url_from_env_file, project_name, read_env_file, run_dir
from dts.errors import CliError, ExitCode, excerpt
from dts.files import shown, write_atomic

MANAGEMENT_API = "http://localhost:15672/api"  # $DTS_MANAGEMENT_API overrides it
COMMAND_TIMEOUT = 120  # seconds for one rabbitmqctl call


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    """Run rabbitmqctl (on the broker's host, as root or the rabbitmq user); CliError when it fails."""
    exe = shutil.which("rabbitmqctl") or ("/usr/sbin/rabbitmqctl" if os.path.exists("/usr/sbin/rabbitmqctl") else None)
    if exe is None:
        raise CliError("rabbitmqctl not found: run this on the broker's host, or create the vhost/user by hand")
    try:
        proc = subprocess.run([exe, "-q", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CliError(f"rabbitmqctl {args[0]} did not answer within {COMMAND_TIMEOUT}s") from None
    if proc.returncode != 0:  # Debian's wrapper, run by another user, says why last on stdout (after a usage)
        last = f"{proc.stderr}\n{proc.stdout}".strip().splitlines()[-1:] or ["no output"]
        raise CliError(f"rabbitmqctl {' '.join(args[:2])} failed: {last[0]}")
    return proc


def ensure_vhost(vhost: str, user: str, password: str | None = None) -> None:
    """Idempotently create `vhost` and give `user` all permissions on it (creating the user when a
    password is given, or resetting its password if it exists)."""
    if vhost not in rabbitmqctl("list_vhosts", "name").stdout.split():
        rabbitmqctl("add_vhost", vhost)
    if password is not None:
        users = [line.split()[0] for line in rabbitmqctl("list_users").stdout.splitlines() if line.strip()]
        rabbitmqctl("change_password" if user in users else "add_user", user, password)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def management_api() -> str:
    return (os.environ.get("DTS_MANAGEMENT_API") or MANAGEMENT_API).rstrip("/")


def _management_put(path: str, body: dict, auth: tuple[str, str] = ("guest", "guest")) -> None:
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(
        f"{management_api()}/{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5):
        pass


def sudo_commands(vhost: str, user: str, password: str) -> list[str]:
    """The shell commands that create `vhost` and `user` with `password` and its permissions, as root on the
    broker's host: safe to run again (add_vhost is idempotent; an existing user gets this password)."""
    v, u, p = shlex.quote(vhost), shlex.quote(user), shlex.quote(password)
    ctl = "sudo rabbitmqctl"
    return [
        f"{ctl} add_vhost {v}",
        f"{ctl} add_user {u} {p} || {ctl} change_password {u} {p}",
        f"{ctl} set_permissions -p {v} {u} '.*' '.*' '.*'",
    ]


def needs_root(vhost: str, user: str, password: str, env_path: Path, reason: str) -> CliError:
    """The failure when neither rabbitmqctl nor the management API could create them: one line (exit 1,
    "could not create the vhost or user"), then the commands to run once with sudo, and where Docker answers
    for this user, the broker in a container instead. .env already holds the credentials those commands
    create, so running the same command again finds them and goes on."""
    from dts.engines.docker import docker_answers

    names = f"vhost and user {vhost!r}" if vhost == user else f"vhost {vhost!r} and user {user!r}"
    who = "" if os.geteuid() == 0 else " without root"
    then = sudo_commands(vhost, user, password)
    if docker_answers():
        then.append("or, with no root, RabbitMQ in a container: make run BROKER=compose  (dts up --broker compose)")
    return CliError(
        f"cannot create {names}{who} ({reason}); {shown(env_path)} has the password: run these once, then again",
        ExitCode.FAILED,
        then=then,
    )


def create_vhost_user(vhost: str, user: str, password: str, env_path: Path) -> str:
    """Create vhost and user (idempotent) with rabbitmqctl, else the management HTTP API.
    Returns which one did it; CliError with the exact commands to run when neither can (needs_root)."""
    try:
        ensure_vhost(vhost, user, password)
        return "rabbitmqctl"
    except (CliError, OSError, subprocess.SubprocessError) as exc:
        ctl_reason = re.sub(r"^rabbitmqctl \S+( \S+)? failed: ", "rabbitmqctl: ", str(exc))
    v, u = quote(vhost, safe=""), quote(user, safe="")
    try:
        _management_put(f"vhosts/{v}", {})
        _management_put(f"users/{u}", {"password": password, "tags": ""})
        _management_put(f"permissions/{v}/{u}", {"configure": ".*", "write": ".*", "read": ".*"})
        return "management API"
    except OSError as exc:
        api_reason = getattr(exc, "reason", None) or exc
        api_reason = getattr(api_reason, "strerror", None) or api_reason
        raise needs_root(vhost, user, password, env_path, f"{ctl_reason}; management API: {api_reason}") from None


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write KEY=VALUE lines atomically to a file readable by its owner only (mode 600)."""
    text = "# Written by `make broker` (RabbitMQ vhost/user) and `make flower` (its login). Keep private (mode 600).\n"
    text += "".join(f"{k}={v}\n" for k, v in values.items())
    write_atomic(path, text, mode=0o600)


def login_works(url: str, timeout: float = 5) -> bool:
    conn = None
    try:
        conn = Connection(url, connect_timeout=timeout)  # a login probe: it connects and asks nothing
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    finally:
        close_quietly(conn)


def require_listener(port: int, timeout: float = 5) -> None:
    """CliError(exit 3) when nothing listens on the broker port of this host."""
    try:
        with socket.create_connection(("localhost", port), timeout=timeout):
            return
    except OSError as exc:
        raise CliError(
            f"cannot reach the broker at localhost:{port} ({exc.strerror or exc}): {START_HINT}",
            ExitCode.BROKER_UNREACHABLE,
        ) from None


MAX_NAME = 255  # RabbitMQ's limit on a vhost or user name


def check_inputs(env_path: Path, vhost: str, user: str) -> None:
    """CliError(exit 2) for inputs that would fail only after the vhost/user were created: a .env path that
    cannot be written (a directory, a missing or read-only folder), a name that is empty or too long."""
    for what, name in (("--vhost", vhost), ("--user", user)):
        if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
            raise CliError(f"{what} must be 1 to {MAX_NAME} printable characters (got {excerpt(name)})", ExitCode.USAGE)
    shown = excerpt(str(env_path), 100)
    if env_path.is_dir():
        raise CliError(f"--env-file {shown} is a directory: give a file path, e.g. .env", ExitCode.USAGE)
    if not env_path.parent.is_dir():
        raise CliError(f"--env-file {shown}: its folder does not exist; create it or give another path", ExitCode.USAGE)
    if not os.access(env_path.parent, os.W_OK):
        raise CliError(f"--env-file {shown}: its folder is not writable; give another path", ExitCode.USAGE)


def provision(env_path: Path, vhost: str | None = None, user: str | None = None) -> str:
    """Make sure .env names a vhost and user that can log in; create them when needed. Returns a report.
    Every input is checked before anything is created (check_inputs)."""
    vhost, user = vhost or project_name(env_path.parent), user or project_name(env_path.parent)
    check_inputs(env_path, vhost, user)
    existing = values = not_a_cluster(env_path)
    url = broker_url_from_env_file(values)
    if url and login_works(url):
        return (
            f"broker vhost {values['DTS_BROKER_VHOST']!r}, user {values['DTS_BROKER_USER']!r}: ok ({shown(env_path)})"
        )
    require_listener(int(values.get("DTS_BROKER_PORT", 5672)))
    # .env's credentials when it has them (a login that fails is fixed, never rotated), else new ones;
    # written first, so that when only root can create them, .env already names what the commands create
    values = container_credentials(existing, vhost, user)
    vhost, user = values["DTS_BROKER_VHOST"], values["DTS_BROKER_USER"]
    if {**existing, **values} != existing:
        try:
            write_env_file(env_path, {**existing, **values})  # other keys (the Flower login) are kept
        except OSError as exc:
            raise CliError(f"cannot write {env_path} ({exc.strerror}); nothing was created", ExitCode.USAGE) from None
    how = create_vhost_user(vhost, user, values["DTS_BROKER_PASSWORD"], env_path)
    url = broker_url_from_env_file({**existing, **values})
    if not login_works(url):
        raise CliError(
            f"created user {user!r} on vhost {vhost!r} but cannot log in as it at {redact_url(url)}",
            ExitCode.BROKER_UNREACHABLE,
        )
    return f"broker vhost {vhost!r}, user {user!r}: created with {how}\ncredentials in {shown(env_path)} (mode 600)"


COMPOSE_PORTS = (5672, 5674)  # the compose broker's host port: 5672, else 5674 (a host RabbitMQ has 5672)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def not_a_cluster(env_path: Path) -> dict[str, str]:
    """.env's values without the cluster's node ports (DTS_CLUSTER_PORT_*), written back without them if it
    had them: `make broker` for the host's broker (or the `broker` service) points the CLIs away from a cluster."""
    values = read_env_file(env_path)
    kept = {k: v for k, v in values.items() if not k.startswith("DTS_CLUSTER_PORT_")}
    if kept != values:
        try:
            write_env_file(env_path, kept)
        except OSError as exc:
            raise CliError(f"cannot write {env_path} ({exc.strerror})", ExitCode.USAGE) from None
    return kept


def container_credentials(existing: dict[str, str], vhost: str, user: str) -> dict[str, str]:
    """The vhost, user and password .env has for a broker in containers, else new ones (a random password)."""
    values = {k: existing[k] for k in ("DTS_BROKER_USER", "DTS_BROKER_PASSWORD", "DTS_BROKER_VHOST") if existing.get(k)}
    if len(values) < 3:
        values = {"DTS_BROKER_USER": user, "DTS_BROKER_PASSWORD": secrets.token_hex(16), "DTS_BROKER_VHOST": vhost}
    return values


def provision_compose(env_path: Path, vhost: str | None = None, user: str | None = None) -> str:
    """For the compose `broker` service (BROKER=compose): make sure .env names a vhost, user, password and
    host port; the container creates the vhost and user at start. Keeps what .env has (the same credentials
    as with the host broker); the port is $DTS_BROKER_PORT, else .env's, else the first free of COMPOSE_PORTS."""
    vhost, user = vhost or project_name(env_path.parent), user or project_name(env_path.parent)
    check_inputs(env_path, vhost, user)
    existing = not_a_cluster(env_path)
    values = container_credentials(existing, vhost, user)
    port = os.environ.get("DTS_BROKER_PORT") or existing.get("DTS_BROKER_PORT")
    if not port:
        free = [p for p in COMPOSE_PORTS if port_free(p)]
        if not free:
            raise CliError(
                f"ports {' and '.join(map(str, COMPOSE_PORTS))} are taken on 127.0.0.1: put a free one "
                "in .env as DTS_BROKER_PORT=...",
                ExitCode.USAGE,
            )
        port = str(free[0])
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise CliError(
            f"DTS_BROKER_PORT must be a port number 1..65535 (got {excerpt(port)}): fix it in .env or the environment",
            ExitCode.USAGE,
        )
    values["DTS_BROKER_PORT"] = port
    if {**existing, **values} != existing:
        try:
            write_env_file(env_path, {**existing, **values})
        except OSError as exc:
            raise CliError(f"cannot write {env_path} ({exc.strerror})", ExitCode.USAGE) from None
    return (
        f"broker service (compose): vhost {values['DTS_BROKER_VHOST']!r}, user {values['DTS_BROKER_USER']!r}, "
        f"127.0.0.1:{port}\ncredentials in {shown(env_path)} (mode 600)"
    )


CLUSTER_PORTS = (5681, 5682, 5683)  # the cluster nodes' host ports (127.0.0.1), DTS_CLUSTER_PORT_1..3


def provision_cluster(env_path: Path, vhost: str | None = None, user: str | None = None) -> str:
    """For the compose `cluster` profile (BROKER=cluster): .env names a vhost, user, password and the three
    nodes' host ports (DTS_CLUSTER_PORT_1..3: the environment's, else .env's, else 5681..5683), and the run
    folder holds the cluster's Erlang cookie (made once; mode 644 in a mode-700 folder, as the nodes' user
    must read the bind-mounted secret). The nodes create the vhost and user at start."""
    vhost, user = vhost or project_name(env_path.parent), user or project_name(env_path.parent)
    check_inputs(env_path, vhost, user)
    existing = read_env_file(env_path)
    values = container_credentials(existing, vhost, user)
    for n, default in enumerate(CLUSTER_PORTS, 1):
        key = f"DTS_CLUSTER_PORT_{n}"
        port = os.environ.get(key) or existing.get(key) or str(default)
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise CliError(
                f"{key} must be a port number 1..65535 (got {excerpt(port)}): fix it in .env", ExitCode.USAGE
            )
        values[key] = port
    cookie = run_dir(env_path.parent) / "cluster" / "erlang.cookie"
    try:
        cookie.parent.mkdir(parents=True, exist_ok=True)
        cookie.parent.chmod(0o700)
        if not cookie.exists():
            write_atomic(cookie, secrets.token_hex(20), mode=0o644)
        if {**existing, **values} != existing:
            write_env_file(env_path, {**existing, **values})
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename} ({exc.strerror})", ExitCode.USAGE) from None
    ports = ", ".join(values[f"DTS_CLUSTER_PORT_{n}"] for n in range(1, len(CLUSTER_PORTS) + 1))
    return (
        f"broker cluster (compose): vhost {values['DTS_BROKER_VHOST']!r}, user {values['DTS_BROKER_USER']!r}\n"
        f"nodes on 127.0.0.1:{ports}; credentials in {shown(env_path)} (mode 600)\nErlang cookie in {shown(cookie)}"
    )
