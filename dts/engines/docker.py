"""Asking the host's Docker: does an engine answer, which compose command is installed (no dts import, so
the engine registry can use it without loading the config).

    docker_answers()     # True when `docker info` exits 0 within its timeout
    compose_command()    # ["docker", "compose"] (v2), ["docker-compose"] (v1.29) or None; $DTS_COMPOSE picks one
"""

from __future__ import annotations

import os
import shutil
import subprocess


def quiet(argv: list[str], timeout: float = 10) -> bool:
    """True when the command exits 0 within `timeout`."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_answers(timeout: float = 10) -> bool:
    return bool(shutil.which("docker")) and quiet(["docker", "info"], timeout)


COMPOSES = {"docker compose": ["docker", "compose"], "docker-compose": ["docker-compose"]}


def compose_command() -> list[str] | None:
    """$DTS_COMPOSE's (`docker compose` or `docker-compose`), else `docker compose` (v2) when the plugin
    answers, else `docker-compose` (v1.29), else None."""
    asked = os.environ.get("DTS_COMPOSE")
    if asked:
        if asked not in COMPOSES:
            from dts.errors import CliError, ExitCode  # only here: this module loads nothing of dts

            raise CliError(f"DTS_COMPOSE must be one of {', '.join(COMPOSES)} (got {asked[:40]!r})", ExitCode.USAGE)
        argv = COMPOSES[asked]
        return argv if shutil.which(argv[0]) and quiet([*argv, "version"]) else None
    if shutil.which("docker") and quiet(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None
