"""The environment: the project (the folder of its config file), .env, and the deployment facts that
override the config file.

    find_config()                                   # --config, $DTS_CONFIG, else ./test-config.yml or a parent's
    project_name(project)                           # 'dts-1a2b3c4d': the project's vhost, user, compose project
    run_dir(project), results_dir(project)          # .run/ (local workers, rendered files) and results/ beside it
    deployment_env(None, env_file(project))         # {'BROKER_URL': ...}: $BROKER_URL > $BROKER_URL_FILE > .env

A project is the folder its test-config.yml is in: its .env, .run/ and results/ live there, and its RabbitMQ
vhost and user and its compose project are named after it, so two projects on one machine never share
queues, credentials or containers. Deployment facts come from the environment, read in one place
(`deployment_env`): $BROKER_URL, else the file named by $BROKER_URL_FILE (Docker's *_FILE convention: a swarm
secret), else the vhost/user in `.env`; $BROKER_TLS_* name broker.tls's files where an engine mounted them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from dts.config.schema import MAX_URL_CHARS
from dts.config.yamlfile import read_bounded, shown_path
from dts.errors import ConfigError

if TYPE_CHECKING:
    from dts.config.schema import Settings

CONFIG_NAME = "test-config.yml"  # what `dts init` writes and every command looks for
MAX_ENV_FILE_BYTES = 64 * 1024  # .env: a few KEY=VALUE lines (docs/reference/input-bounds.md)
# $BROKER_TLS_<KEY> overrides broker.tls.<key>: where a container finds the files mounted into it
TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file")
TLS_ENV = {key: f"BROKER_TLS_{key.upper()}" for key in TLS_FILE_KEYS}


def find_config(path: str | os.PathLike | None = None, cwd: Path | None = None) -> Path:
    """The config file: `path` (--config), else $DTS_CONFIG, both relative to the working folder; else the
    first test-config.yml in the working folder or a folder above it (as git finds its repository)."""
    here = Path(cwd or os.getcwd())
    raw = path or os.environ.get("DTS_CONFIG")
    if raw:
        return (here / Path(raw).expanduser()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return (folder / CONFIG_NAME).resolve()
    raise ConfigError(
        f"no {CONFIG_NAME} in {here} or a folder above it: run `dts init` to write one here, or pass --config PATH"
    )


def project_dir(settings: Settings) -> Path:
    """The project: the folder of the config file."""
    return settings.path.parent


def project_name(project: Path) -> str:
    """'dts-<8 hex>': the project's RabbitMQ vhost/user and compose project name. Derived from the project
    folder's path, so two projects on one host never share queues, credentials or containers."""
    import hashlib  # on use: ~2 ms of every CLI's start otherwise

    return "dts-" + hashlib.sha1(str(project).encode()).hexdigest()[:8]


def run_dir(project: Path) -> Path:
    """The project's run state (local workers' pid and log files, rendered files): $DTS_RUN_DIR, else .run/."""
    return Path(os.environ.get("DTS_RUN_DIR") or project / ".run")


def results_dir(project: Path) -> Path:
    """Where result files go: $DTS_RESULTS_DIR, else the project's results/ (git-ignored)."""
    return Path(os.environ.get("DTS_RESULTS_DIR") or project / "results")


def env_file(project: Path) -> Path:
    """The project's git-ignored .env: the workers' broker vhost, user and password (`dts broker` writes it)."""
    return project / ".env"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of the git-ignored .env written by `make broker` (missing file: empty)."""
    if not os.path.lexists(path):
        return {}
    lines = read_bounded(
        path, MAX_ENV_FILE_BYTES, "env file", "it holds KEY=VALUE lines (`make broker` writes it)"
    ).splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip().strip("'\"") for k, v in pairs}


def broker_url_from_env_file(values: dict[str, str], host: str = "localhost", tls: bool = False) -> str | None:
    """The broker URL for the dedicated vhost/user in .env, if .env defines one; with `tls`, the amqps:// URL
    of the broker's TLS listener ($DTS_BROKER_TLS_PORT, default 5671): what containers use when broker.tls is set."""
    try:
        user, password, vhost = values["DTS_BROKER_USER"], values["DTS_BROKER_PASSWORD"], values["DTS_BROKER_VHOST"]
    except KeyError:
        return None
    scheme, port = (
        ("amqps", values.get("DTS_BROKER_TLS_PORT", "5671")) if tls else ("amqp", values.get("DTS_BROKER_PORT", "5672"))
    )
    ports = cluster_ports(values) or [port]
    login, path = f"{quote(user, safe='')}:{quote(password, safe='')}", quote(vhost, safe="")
    return ";".join(f"{scheme}://{login}@{host}:{each}/{path}" for each in ports)


CLUSTER_NODES = 3  # the compose `cluster` profile's RabbitMQ nodes: rabbit-1 .. rabbit-3


def cluster_ports(values: dict[str, str]) -> list[str]:
    """The host ports of the compose cluster's nodes (`DTS_CLUSTER_PORT_1`.. in .env, written by `make broker
    BROKER=cluster`), or [] when .env names no cluster: then the CLIs' URL lists each node, for failover."""
    ports = [values.get(f"DTS_CLUSTER_PORT_{n}", "") for n in range(1, CLUSTER_NODES + 1)]
    return ports if all(ports) else []


def read_broker_url_file(path: str) -> str:
    """The broker URL in the file $BROKER_URL_FILE names (a Docker secret: /run/secrets/...), without the
    surrounding whitespace; ConfigError naming the file when it cannot be read or holds no URL."""
    hint = "$BROKER_URL_FILE must name a readable file holding one amqp://user:password@host:5672/vhost URL"
    if not path.strip():
        raise ConfigError("$BROKER_URL_FILE is set but empty: unset it or name a file holding the broker URL")
    url = read_bounded(Path(path), MAX_URL_CHARS + 2, "broker URL file", hint).strip()
    if not url:
        raise ConfigError(f"{shown_path(Path(path))} (from $BROKER_URL_FILE) is empty; {hint}")
    return url


def deployment_env(environ: dict[str, str] | None = None, env_file: Path | None = None) -> dict[str, str]:
    """The environment overrides, read in one place. Precedence: $BROKER_URL (set but empty is an error),
    else the file $BROKER_URL_FILE names (unreadable: an error), else the .env vhost/user (at $DTS_BROKER_HOST,
    default localhost; with BROKER_URL_TLS, its amqps:// URL for a config with broker.tls, when the broker is
    on another host or is the compose broker with its TLS listener), else the config.
    $BROKER_TLS_CA_FILE / _CERT_FILE / _KEY_FILE override broker.tls's files (where an engine mounted them)."""
    environ = os.environ if environ is None else environ
    tls = {name: environ[name] for name in TLS_ENV.values() if name in environ}  # files mounted into a container
    return {**tls, **_broker_url_env(environ, env_file)}


def _broker_url_env(environ, env_file: Path) -> dict[str, str]:
    if "BROKER_URL" in environ:
        if not environ["BROKER_URL"].strip():
            raise ConfigError("$BROKER_URL is set but empty: unset it or give amqp://user:password@host:5672/vhost")
        return {"BROKER_URL": environ["BROKER_URL"]}
    if "BROKER_URL_FILE" in environ:
        url = read_broker_url_file(environ["BROKER_URL_FILE"])
        return {"BROKER_URL": url, "BROKER_URL_SOURCE": "the URL in $BROKER_URL_FILE"}
    values = read_env_file(env_file) if env_file else {}
    elsewhere = environ.get("DTS_BROKER_HOST") or values.get("DTS_BROKER_HOST")  # a broker on another host
    url = broker_url_from_env_file(values, host=elsewhere or "localhost")
    if not url:
        return {}
    if not (elsewhere or environ.get("DTS_BROKER_TLS_DIR") or values.get("DTS_BROKER_TLS_DIR")):
        return {"BROKER_URL": url}
    # a broker on another host, or the compose broker's TLS listener (it has no plain one): with broker.tls
    # set, the config takes the amqps:// URL of its TLS port (config/parse.py)
    port = {"DTS_BROKER_TLS_PORT": environ["DTS_BROKER_TLS_PORT"]} if environ.get("DTS_BROKER_TLS_PORT") else {}
    tls_url = broker_url_from_env_file({**values, **port}, host=elsewhere or "localhost", tls=True)
    return {"BROKER_URL": url, "BROKER_URL_TLS": tls_url}
