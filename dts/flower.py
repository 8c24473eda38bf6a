"""Flower, Celery's web monitor, for this project's pools: behind a login, on 127.0.0.1:5555 by default.

    python -m dts.flower                      # what `make flower` runs: http://127.0.0.1:5555 until Ctrl-C
    python -m dts.flower --port 5556          # another port
    python -m dts.flower --address 0.0.0.0    # what the compose `flower` service runs inside its container
    python -m dts.flower --login              # create the login in .env if needed; print user and password
    python -m dts.flower --engine compose     # the `monitoring` compose profile, beside the worker containers

The broker is the one every CLI uses ($BROKER_URL > the vhost/user in .env > test-config.yml). The login is
DTS_FLOWER_USER / DTS_FLOWER_PASSWORD from the environment (how the compose service gets it), else from
.env, where it is generated the first time (mode 600; other keys kept). Flower 2.2.0 leaves `/metrics` open
even with --basic-auth; here it needs the login too. Only `/healthcheck` (it answers `OK`) is open.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import urllib.request
from pathlib import Path

from dts.cli import Parser, int_between, report
from dts.config import ENV_FILE, load_settings, read_env_file
from dts.errors import CliError, ExitCode, exit_epilog

USER_KEY, PASSWORD_KEY = "DTS_FLOWER_USER", "DTS_FLOWER_PASSWORD"
DEFAULT_USER = "flower"
DEFAULT_ADDRESS, DEFAULT_PORT = "127.0.0.1", 5555
PROFILE, SERVICE = "monitoring", "flower"  # the compose profile and service (docker-compose.yml)


def ensure_login(env_file: Path = ENV_FILE, environ: dict[str, str] | None = None) -> tuple[str, str, str]:
    """(user, password, where it is kept): from the environment, else .env (generated there once)."""
    environ = os.environ if environ is None else environ
    if environ.get(PASSWORD_KEY):
        user, password, where = environ.get(USER_KEY) or DEFAULT_USER, environ[PASSWORD_KEY], f"${PASSWORD_KEY}"
    else:
        from dts.provision import write_env_file  # provision imports kombu; only needed here

        values = read_env_file(env_file)
        user, password = values.get(USER_KEY) or DEFAULT_USER, values.get(PASSWORD_KEY)
        if not password:
            password = secrets.token_urlsafe(24)  # letters, digits, - and _: no ':' or ',' (Flower's separators)
            try:
                write_env_file(env_file, {**values, USER_KEY: user, PASSWORD_KEY: password})
            except OSError as exc:
                raise CliError(
                    f"cannot write the Flower login to {env_file} ({exc.strerror}): set {USER_KEY} and "
                    f"{PASSWORD_KEY} in the environment",
                    ExitCode.USAGE,
                ) from None
        where = f"{PASSWORD_KEY} in {env_file}"
    if ":" in user or "," in user or "," in password:
        raise CliError(
            f"{USER_KEY} must not contain ':' or ',' and {PASSWORD_KEY} no ',' (Flower's separators)", ExitCode.USAGE
        )
    return user, password, where


def protect_metrics() -> None:
    """Make Flower's `/metrics` ask for the login like every other page (Flower 2.2.0 serves it to anyone)."""
    from flower import urls
    from flower.views.monitor import Metrics
    from tornado import web

    class AuthenticatedMetrics(Metrics):
        @web.authenticated
        async def get(self):
            await super().get()

    metrics = [i for i, h in enumerate(urls.handlers) if isinstance(h, tuple) and h[1] is Metrics]
    if len(metrics) != 1:  # another Flower version: refuse rather than serve an open /metrics
        raise CliError(f"cannot find Flower's /metrics handler to protect it (flower {flower_version()})")
    urls.handlers[metrics[0]] = (urls.handlers[metrics[0]][0], AuthenticatedMetrics)


def flower_version() -> str:
    from importlib.metadata import version

    return version("flower")


def serve(config: str | None, address: str, port: int) -> int:
    """Run Flower in this process until it is stopped (SIGTERM or Ctrl-C)."""
    from celery_app import app, use_settings
    from dts.broker import check_broker, reaching, redact_url
    from dts.control import ask_workers
    from dts.deadline import Deadline, session

    settings = load_settings(config)
    use_settings(settings)
    user, password, where = ensure_login()
    check_broker(app, settings.broker.connect_timeout)  # exit 3 with the fix, before Flower retries forever
    # Workers send task events only when asked; Flower asks every 5 s from its start. Asking now (and waiting
    # for the replies) means tasks sent from the moment Flower answers are seen.
    deadline = Deadline.after(settings.broker.connect_timeout)
    with reaching(app), session(app, deadline) as conn:
        replies = ask_workers(app, conn, "enable_events", deadline, wait=1.0)
    os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password}"  # not on the command line: `ps` shows that to all
    protect_metrics()
    print(
        f"Flower on http://{address}:{port} for {redact_url(settings.broker.url)}: user {user!r}, "
        f"password: {where} (`make flower-login` prints it); task events on for {len(replies)} worker(s)",
        flush=True,
    )
    code = app.start(["flower", f"--address={address}", f"--port={port}"])
    return code or ExitCode.OK


def healthy(url: str, deadline: float) -> bool:
    """Poll Flower's open `/healthcheck` until it answers OK or the deadline passes."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthcheck", timeout=2) as resp:
                if resp.read() == b"OK":
                    return True
        except OSError:
            pass
        time.sleep(0.5)  # polling interval, not a synchronisation stand-in
    return False


def compose_up(config: str | None, port: int) -> int:
    """Start the `flower` service of the `monitoring` profile (the project image) and wait until it answers."""
    from celery_app import app, use_settings
    from dts.engines.compose import ComposeEngine

    settings = load_settings(config)
    use_settings(settings)
    user, _, where = ensure_login()
    engine = ComposeEngine(settings, app, env={"COMPOSE_PROFILES": PROFILE, "DTS_FLOWER_PORT": str(port)})
    engine.check_credentials()  # the container cannot log in as guest: `make broker` first
    engine.compose("up", "-d", "--no-deps", SERVICE, timeout=300)
    url = f"http://127.0.0.1:{port}"
    if not healthy(url, time.monotonic() + settings.engine.start_timeout):
        raise CliError(
            f"the {SERVICE} container does not answer on {url}: see `docker-compose -p {engine.project} logs {SERVICE}`"
        )
    print(
        f"Flower (compose service {SERVICE!r}, project {engine.project}) on {url}: user {user!r}, password: {where} "
        "(`make flower-login` prints it); `make down` stops it"
    )
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="python -m dts.flower",
        description="Flower for this project's pools, behind the login in .env (DTS_FLOWER_USER/PASSWORD).",
        epilog=exit_epilog("python -m dts.flower"),
    )
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int_between(1, 65535), default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--config", help="config file (default: test-config.yml, or $DTS_CONFIG)")
    parser.add_argument(
        "--engine",
        choices=("local", "compose"),
        default="local",
        help="local: this process (default); compose: the `monitoring` profile's container",
    )
    parser.add_argument("--login", action="store_true", help="create the login if needed and print it, then exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.login:
            user, password, where = ensure_login()
            print(f"user: {user}\npassword: {password}\n(kept as {where})")
            return ExitCode.OK
        if args.engine == "compose":
            return compose_up(args.config, args.port)
        return serve(args.config, args.address, args.port)
    except CliError as exc:
        report("dts.flower", f"dts.flower: error: {exc}", exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
