"""Flower, Celery's web monitor, behind a login: what `dts flower` (dts.cli.flower) serves.

    ensure_login(env_file(project))           # (user, password, where it is kept): generated into .env once
    protect_metrics()                         # Flower's /metrics behind the login too
    healthy("http://127.0.0.1:5555", deadline)

The broker is the one every CLI uses ($BROKER_URL > the vhost/user in .env > test-config.yml). The login is
DTS_FLOWER_USER / DTS_FLOWER_PASSWORD from the environment (how the compose service gets it), else from
.env, where it is generated the first time (mode 600; other keys kept). Flower 2.2.0 leaves `/metrics` open
even with --basic-auth; here it needs the login too. Only `/healthcheck` (it answers `OK`) is open.
"""

from __future__ import annotations

import os
import secrets
import time
import urllib.request
from pathlib import Path

from dts.config import read_env_file
from dts.errors import CliError, ExitCode

USER_KEY, PASSWORD_KEY = "DTS_FLOWER_USER", "DTS_FLOWER_PASSWORD"
DEFAULT_USER = "flower"
DEFAULT_ADDRESS, DEFAULT_PORT = "127.0.0.1", 5555
PROFILE, SERVICE = "monitoring", "flower"  # the compose profile and service (docker-compose.yml)


def ensure_login(env_file: Path, environ: dict[str, str] | None = None) -> tuple[str, str, str]:
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
