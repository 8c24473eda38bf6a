"""Every environment variable the project reads, declared once (pure data).

The docs' reference page (docs/reference/environment.md) is generated from this list, and
tests/test_variables.py checks it against the code both ways: a variable read by a module, a script, the
Makefile or a compose file must be here, and every one here must be read somewhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    group: str
    meaning: str


BROKER = "broker"
PATHS = "files and folders"
IMAGES = "engines and images"
OUTPUT = "output"

VARIABLES = (
    Variable(
        "BROKER_URL",
        BROKER,
        "the broker URL of every CLI and worker. Precedence: `$BROKER_URL` > the file named by `$BROKER_URL_FILE` "
        "> the vhost/user in `.env` (written by `make broker`; at `DTS_BROKER_HOST`) > `broker.url` in the config. Set but empty is an "
        "error (exit 2). Several URLs separated by `;` are the nodes of one cluster: a client connects to the "
        "first that answers and, when it loses that node, to the next (round robin)",
    ),
    Variable(
        "BROKER_URL_FILE",
        BROKER,
        "a file holding the broker URL (Docker's `*_FILE` convention: the swarm workers' secret); an unreadable "
        "file is exit 2 naming it",
    ),
    Variable("BROKER_TLS_CA_FILE", BROKER, "overrides `broker.tls.ca_file`: where an engine mounted the CA file"),
    Variable("BROKER_TLS_CERT_FILE", BROKER, "overrides `broker.tls.cert_file` (the client certificate)"),
    Variable("BROKER_TLS_KEY_FILE", BROKER, "overrides `broker.tls.key_file` (the client key)"),
    Variable(
        "DTS_BROKER_USER",
        BROKER,
        "the workers' broker user, in `.env` (`make broker`); with `DTS_BROKER_PASSWORD` and `DTS_BROKER_VHOST` it "
        "makes the URL of the CLIs and of the containers",
    ),
    Variable("DTS_BROKER_PASSWORD", BROKER, "its password, in `.env` (random, 32 characters)"),
    Variable("DTS_BROKER_VHOST", BROKER, "its vhost, in `.env`: `dts-<hash of the checkout's folder>`"),
    Variable(
        "DTS_BROKER_PORT",
        BROKER,
        "the broker's port on the host (default 5672); with `BROKER=compose`, the port the broker container is "
        "published on (written to `.env`: 5672 if free, else 5674)",
    ),
    Variable(
        "DTS_BROKER_HOST",
        BROKER,
        "the broker's host name when it runs on another host (in `.env` or the environment): the CLIs, local "
        "workers and containers reach the `.env` vhost/user there (over TLS at `DTS_BROKER_TLS_PORT` when the config "
        "has `broker.tls`). Unset: `localhost` for the CLIs and local workers, `host.docker.internal` (the host "
        "each container runs on) for compose and swarm workers",
    ),
    Variable(
        "DTS_MANAGEMENT_API",
        BROKER,
        "where `make broker` (`dts broker`, `dts up`) reaches RabbitMQ's management HTTP API when `rabbitmqctl` "
        "cannot create the vhost and user (default `http://localhost:15672/api`, login guest/guest); when "
        "neither can, it prints the `sudo rabbitmqctl` commands to run once",
    ),
    *(
        Variable(
            f"DTS_CLUSTER_PORT_{n}",
            BROKER,
            f"the host port (127.0.0.1) of the compose cluster's node rabbit-{n} (default {5680 + n}); "
            "written to `.env` by `make broker BROKER=cluster`, where the CLIs' failover URL comes from",
        )
        for n in (1, 2, 3)
    ),
    Variable(
        "DTS_CLUSTER_SEED",
        BROKER,
        "in a cluster node's container: the node it joins on its first start (`rabbit@rabbit-1`; set by "
        "docker-compose.yml)",
    ),
    Variable(
        "DTS_SWARM_STATE",
        IMAGES,
        "where `make swarm-nodes` keeps its engines' data, logs and the registry's storage (default /var/lib/dts-swarm)",
    ),
    Variable("DTS_SWARM_RUN", IMAGES, "the swarm nodes' sockets and exec roots (default /run/dts-swarm)"),
    Variable("DTS_SWARM_WAIT", IMAGES, "seconds `make swarm-nodes` waits for one engine or the registry (default 60)"),
    Variable(
        "DTS_REGISTRY_PORT",
        IMAGES,
        "the port of the swarm nodes' image registry (default 5000; the nodes pull from 10.213.0.1:PORT)",
    ),
    Variable("DTS_BROKER_TLS_PORT", BROKER, "the broker's TLS port for containers (default 5671)"),
    Variable(
        "DTS_BROKER_TLS_DIR",
        BROKER,
        "a folder of ca.pem, server.pem, server.key: the compose `broker` service listens on TLS only "
        "(`DTS_BROKER_TLS_PORT`, client certificates of ca.pem required), plain AMQP refused; the CLIs and local "
        "workers then reach the `.env` vhost/user at that port (the config's `broker.tls` says how)",
    ),
    Variable(
        "DTS_BROKER_WAIT",
        BROKER,
        "seconds `scripts/ensure-broker.sh` waits for a starting RabbitMQ to answer (default 300)",
    ),
    Variable("PYTHON", PATHS, "the Python that makes `.venv` and checks the broker (default `python3`)"),
    Variable("DTS_CONFIG", PATHS, "the config file when `--config` is not given (default `test-config.yml`)"),
    Variable("DTS_RESULTS_DIR", PATHS, "where result files go (default `results/`)"),
    Variable(
        "DTS_RUN_DIR",
        PATHS,
        "where local workers' supervisord files, logs and the rendered compose/swarm files go (default `.run/`)",
    ),
    Variable("DTS_POOL", IMAGES, "the pool a worker container serves (set per service by the engine)"),
    Variable(
        "DTS_IMAGE",
        IMAGES,
        "the worker image's name (default: the project's own, `<project>-worker:<version>-<hash>`, `dts engine --image`)",
    ),
    Variable(
        "RABBITMQ",
        IMAGES,
        "the RabbitMQ line of the compose broker's image that `scripts/build-broker-image.sh` builds: 3.10 "
        "(default), 4.0 or 4.3 (`make up BROKER=compose RABBITMQ=4.3`, as `dts up --rabbitmq 4.3`)",
    ),
    Variable(
        "DTS_COMPOSE",
        IMAGES,
        "the Compose the compose engine runs: `docker compose` (v2, the default when its plugin answers) or "
        "`docker-compose` (v1.29); any other value is exit 2",
    ),
    Variable(
        "BASE_IMAGE",
        IMAGES,
        "the worker image's base (default `python:3.12-slim`; where no registry answers, a local Debian base is "
        "made); also the broker image's base (default `debian:bookworm-slim`)",
    ),
    Variable(
        "DEBIAN_MIRROR",
        IMAGES,
        "the Debian mirror the local base image is made from (default `http://deb.debian.org/debian`)",
    ),
    Variable(
        "HOST_CA_BUNDLE",
        IMAGES,
        "the CA bundle copied into the local base image (default `/etc/ssl/certs/ca-certificates.crt`)",
    ),
    Variable(
        "DTS_BROKER_IMAGE",
        IMAGES,
        "the broker container's image (default `dts-broker:<line>-<recipe hash>`, built locally); another name "
        "is pulled, not built",
    ),
    Variable("DTS_BROKER_REBUILD", IMAGES, "set: rebuild the broker image even when its tag exists"),
    Variable(
        "DTS_CONSUMER_TIMEOUT_MS",
        IMAGES,
        "the broker containers' consumer_timeout in ms: `dts up` sets it from broker.consumer_timeout (default 1800000)",
    ),
    Variable("COMPOSE_PROJECT_NAME", IMAGES, "the compose project (default `dts-<hash>`, the checkout's vhost name)"),
    Variable("DTS_STACK", IMAGES, "the swarm stack's name (default `dts-<hash>`)"),
    Variable("DTS_FLOWER_USER", OUTPUT, "Flower's login user (default `flower`); the environment wins over `.env`"),
    Variable("DTS_FLOWER_PASSWORD", OUTPUT, "Flower's password (generated into `.env` by the first `make flower`)"),
    Variable(
        "DTS_FLOWER_PORT",
        OUTPUT,
        "the host port of the compose Flower service, set by `dts flower --engine compose --port N` "
        "(`make flower ENGINE=compose FLOWER_PORT=N`); a value of your own is replaced",
    ),
    Variable(
        "LOG_FORMAT",
        OUTPUT,
        "`text` (default on the host) or `json` (default in containers): one JSON object per log line",
    ),
    Variable("CI", OUTPUT, "`true`: plain output even on a terminal; in the tests, a missing broker or engine fails"),
    Variable("NO_COLOR", OUTPUT, "set and not empty: no colour on a terminal (the live lines, and rich's tables)"),
)


def names() -> tuple[str, ...]:
    return tuple(v.name for v in VARIABLES)
