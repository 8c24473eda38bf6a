"""Broker checks shared by the CLIs (reachable? consumers? depth?) and the workers' vhost and user.

from broker import check_broker, queue_stats
check_broker(app, timeout=5)            # raises CliError(exit 3) with a one-line fix
queue_stats(app, ["queue_a"])            # {"queue_a": QueueStats(ready=0, consumers=1)}
python broker.py provision               # vhost + user for the workers, written to .env (`make broker`)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from amqp.exceptions import AccessRefused, NotFound
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError

from celery_app import CliError, ExitCode

START_HINT = "start RabbitMQ with `make broker` (or set BROKER_URL to a running broker)"


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # messages waiting to be delivered
    consumers: int  # consumers on the queue (a worker process pool counts once)
    exists: bool = True


def redact_url(url: str) -> str:
    """amqp://user:secret@host:5672/vh -> amqp://user:***@host:5672/vh"""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]  # host[:port] as written (parts.port raises on a bad port)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_broker(app, timeout: float) -> None:
    """Open (and keep in the app's pool) a connection; CliError(exit 3) with a fix if that fails."""
    url = redact_url(app.conf.broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except AccessRefused:
        raise CliError(
            f"the broker at {url} refused the login: check the user, password and vhost "
            "(run `make broker` to create the project's vhost and user)",
            ExitCode.BROKER_UNREACHABLE,
        ) from None
    except AMQPConnectionError as exc:  # e.g. NotAllowed: the vhost does not exist or the user may not use it
        raise CliError(
            f"the broker at {url} refused the connection ({type(exc).__name__}: {exc.reply_text or exc}): "
            "check that the vhost exists and the user has permissions on it (`make broker` sets both up)",
            ExitCode.BROKER_UNREACHABLE,
        ) from None
    except (TimeoutError, OSError, OperationalError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(
            f"cannot reach the broker at {url} ({reason}): {START_HINT}", ExitCode.BROKER_UNREACHABLE
        ) from None


def queue_stats(app, queues: list[str]) -> dict[str, QueueStats]:
    """Passive-declare each queue: messages ready and consumer count. A missing queue has no consumer."""
    stats = {}
    with app.connection_for_write() as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
                stats[queue] = QueueStats(queue, ready, consumers)
            except NotFound:
                stats[queue] = QueueStats(queue, 0, 0, exists=False)
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - a channel closed by the broker (404) cannot close again
                    pass
    return stats


def require_consumers(app, queues: dict[str, str]) -> dict[str, QueueStats]:
    """queues: {queue: pool}. CliError(exit 4) naming the first queue nobody consumes."""
    stats = queue_stats(app, list(queues))
    for queue, pool in queues.items():
        if stats[queue].consumers == 0:
            raise CliError(
                f"{queue} has no consumer: no {pool} worker is running; start the workers with `make up` "
                f"(or `python scale.py {pool} 1`)",
                ExitCode.NO_CONSUMER,
            )
    return stats


def warm_up(app, publishers: int = 1) -> None:
    """Do the one-off set-up of the first publish and the first result wait ahead of time: open
    `publishers` producer connections, declare the task queues on them, build the task sender, start
    consuming from the rpc:// reply queue. Timing a dispatch then measures the dispatch, not set-up."""
    from contextlib import ExitStack

    from kombu.common import maybe_declare
    from kombu.utils.uuid import uuid

    app.amqp.send_task_message  # noqa: B018 - a cached property that imports and builds the sender
    with ExitStack() as stack:
        for _ in range(publishers):
            producer = stack.enter_context(app.producer_pool.acquire(block=True))
            for queue in app.amqp.queues.values():
                maybe_declare(queue, producer.channel, retry=True)
            app.backend.on_task_call(producer, None)
    app.backend.result_consumer.consume_from(uuid())


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run rabbitmqctl (needs to run on the broker's host as root or the rabbitmq user)."""
    exe = shutil.which("rabbitmqctl") or ("/usr/sbin/rabbitmqctl" if os.path.exists("/usr/sbin/rabbitmqctl") else None)
    if exe is None:
        raise CliError("rabbitmqctl not found: run this on the broker's host, or create the vhost/user by hand")
    proc = subprocess.run([exe, "-q", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise CliError(
            f"rabbitmqctl {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
        )
    return proc


def ensure_vhost(vhost: str, user: str, password: str | None = None) -> None:
    """Idempotently create `vhost` and give `user` all permissions on it (creating the user when a
    password is given, or resetting its password if it exists)."""
    existing = rabbitmqctl("list_vhosts", "name").stdout.split()
    if vhost not in existing:
        rabbitmqctl("add_vhost", vhost)
    if password is not None:
        users = [line.split()[0] for line in rabbitmqctl("list_users").stdout.splitlines() if line.strip()]
        if user in users:
            rabbitmqctl("change_password", user, password)
        else:
            rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


# --------------------------------------------------------------------------- the project's vhost and user

MANAGEMENT_API = "http://localhost:15672/api"


def _management_put(path: str, body: dict, auth: tuple[str, str] = ("guest", "guest")) -> None:
    import base64
    import json
    import urllib.request

    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(
        f"{MANAGEMENT_API}/{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5):
        pass


def create_vhost_user(vhost: str, user: str, password: str) -> str:
    """Create vhost and user (idempotent) with rabbitmqctl, else the management HTTP API.
    Returns which one did it; CliError with the exact commands to run when neither can."""
    try:
        ensure_vhost(vhost, user, password)
        return "rabbitmqctl"
    except (CliError, OSError, subprocess.SubprocessError) as exc:
        log_reason = str(exc)
    try:
        from urllib.parse import quote as q

        _management_put(f"vhosts/{q(vhost, safe='')}", {})
        _management_put(f"users/{q(user, safe='')}", {"password": password, "tags": ""})
        _management_put(
            f"permissions/{q(vhost, safe='')}/{q(user, safe='')}", {"configure": ".*", "write": ".*", "read": ".*"}
        )
        return "management API"
    except OSError as exc:
        raise CliError(
            f"cannot create vhost {vhost!r} and user {user!r} ({log_reason}; management API: {exc}); run on the broker host: "
            f"sudo rabbitmqctl add_vhost {vhost} && sudo rabbitmqctl add_user {user} '<password>' && "
            f'sudo rabbitmqctl set_permissions -p {vhost} {user} ".*" ".*" ".*"  then put DTS_BROKER_USER, '
            "DTS_BROKER_PASSWORD and DTS_BROKER_VHOST in .env"
        ) from None


def write_env_file(path, values: dict[str, str]) -> None:
    """Write KEY=VALUE lines to a file readable by its owner only (mode 600)."""
    text = "# Written by `make broker`: the workers' RabbitMQ vhost and user. Keep private (mode 600).\n"
    text += "".join(f"{k}={v}\n" for k, v in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def login_works(url: str, timeout: float = 5) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def provision(env_path, vhost: str | None = None, user: str | None = None) -> str:
    """Make sure .env names a vhost and user that can log in; create them when needed. Returns a report.
    Both default to this checkout's own name (celery_app.checkout_name()), so resetting the password
    here never locks out another checkout's workers."""
    import secrets

    from celery_app import broker_url_from_env_file, checkout_name, read_env_file

    vhost, user = vhost or checkout_name(), user or checkout_name()
    env_path = Path(env_path)
    values = read_env_file(env_path)
    url = broker_url_from_env_file(values)
    if url and login_works(url):
        return f"broker vhost {values['DTS_BROKER_VHOST']!r}, user {values['DTS_BROKER_USER']!r}: ok ({env_path})"
    values = {"DTS_BROKER_USER": user, "DTS_BROKER_PASSWORD": secrets.token_hex(16), "DTS_BROKER_VHOST": vhost}
    how = create_vhost_user(vhost, user, values["DTS_BROKER_PASSWORD"])
    write_env_file(env_path, values)
    url = broker_url_from_env_file(values)
    if not login_works(url):
        raise CliError(f"created user {user!r} on vhost {vhost!r} but cannot log in as it at {redact_url(url)}")
    return f"broker vhost {vhost!r}, user {user!r}: created with {how}; credentials in {env_path} (mode 600)"


def main(argv: list[str] | None = None) -> int:
    """`python broker.py provision`: the vhost/user for the workers, written to .env (used by `make broker`)."""
    import argparse
    import sys

    from celery_app import ENV_FILE

    parser = argparse.ArgumentParser(
        prog="broker.py",
        description="Create the workers' RabbitMQ vhost and user and write them to .env (idempotent).",
        epilog="example: python broker.py provision   (vhost and user default to this checkout's name, dts-<hash>)",
    )
    parser.add_argument("action", choices=["provision"])
    parser.add_argument("--vhost", help="default: this checkout's name, dts-<hash of its directory>")
    parser.add_argument("--user", help="default: the same as the vhost")
    parser.add_argument("--env-file", default=str(ENV_FILE))
    args = parser.parse_args(argv)
    try:
        print(provision(args.env_file, args.vhost, args.user))
    except CliError as exc:
        print(f"broker.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
