"""What every container engine (compose, swarm, the k8s renderer) takes from the one worker definition:
the `x-worker` service of docker-compose.yml, where the config sits in the image, and how broker.tls's
files reach a container.

    worker_template()              # the x-worker mapping (image, extra_hosts, tmpfs, ...)
    container_tls_files(settings)  # [(env var, host file, path in the container), ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dts.config import TLS_ENV, Settings
from dts.files import DATA_DIR

COMPOSE_FILE = DATA_DIR / "docker-compose.yml"  # the package's copy of the repository's docker-compose.yml
CONFIG_IN_IMAGE = "/app/test-config.yml"
TLS_DIR_IN_CONTAINER = "/run/secrets"  # where a container finds broker.tls's files (swarm's secrets go there too)


def worker_template(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The `x-worker` service definition of docker-compose.yml."""
    return yaml.safe_load(path.read_text())["x-worker"]


def container_tls_files(settings: Settings) -> list[tuple[str, str, str]]:
    """broker.tls's files as a container engine delivers them: (env var, file on the host, path in the
    container) for each file set; the worker reads the path from the env var ($BROKER_TLS_CA_FILE, ...),
    which overrides the host path in the mounted config. Empty without broker.tls (pure)."""
    tls = settings.broker.tls
    if tls is None:
        return []
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    return [(TLS_ENV[key], host, f"{TLS_DIR_IN_CONTAINER}/dts_tls_{key}.pem") for key, host in files.items() if host]


def bounded_logging(settings: Settings) -> dict[str, Any]:
    """A container's `logging:`: Docker's json-file driver, rotated at engine.log_max_mb, engine.log_files kept
    (Docker's default keeps one file that grows without bound)."""
    engine = settings.engine
    return {"driver": "json-file", "options": {"max-size": f"{engine.log_max_mb}m", "max-file": str(engine.log_files)}}
