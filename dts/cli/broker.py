"""`dts broker`: the workers' RabbitMQ vhost and user, created once and written to the project's .env
(dts.provision). `dts up` runs it first; `make broker` runs it in this repository.

    dts broker                  # the host's RabbitMQ: vhost and user named after the project (dts-<hash>)
    dts broker --compose        # for the compose `broker` service: .env only (the container makes them)
    dts broker --cluster        # for the compose `cluster` profile: .env and the cluster's Erlang cookie
    dts broker --tls-snippet /etc/rabbitmq/tls   # prints the host RabbitMQ's TLS settings (a conf.d file)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dts.cli import command_parser, run_main
from dts.config import env_file, find_config
from dts.errors import CliError, ExitCode, exit_epilog
from dts.provision import MAX_NAME, provision, provision_cluster, provision_compose

PROG = "dts broker"
DESCRIPTION = "Create the workers' RabbitMQ vhost and user and write them to the project's .env (idempotent)."
EPILOG = """examples:
  dts broker                  the host's RabbitMQ: vhost and user named after the project (dts-<hash of its folder>)
  dts broker --compose        for the compose `broker` service: .env only (the container makes them)
  dts broker --cluster        for the compose `cluster` profile: .env and the cluster's Erlang cookie
  dts broker --tls-snippet /etc/rabbitmq/tls > 60-dts-tls.conf
                              the host RabbitMQ's TLS listener, for /etc/rabbitmq/conf.d/ (changes nothing)

""" + exit_epilog("broker")
PROVISIONERS = {"host": provision, "compose": provision_compose, "cluster": provision_cluster}


def tls_snippet(folder: str, tls_port: int = 5671, plain: str | None = "127.0.0.1:5672") -> str:
    """A RabbitMQ configuration file (conf.d) for a TLS listener on `tls_port` with the broker's certificate
    (server.pem, server.key in `folder`) that requires a client certificate signed by folder/ca.pem; plain
    AMQP only on `plain` (the host's loopback: its own tools), or nowhere (None). The compose broker's
    entrypoint (docker/broker/entrypoint.sh) writes the same settings, with no plain listener (pure)."""
    lines = [
        f"# dts broker --tls-snippet: TLS on {tls_port}, a client certificate signed by ca.pem required",
        "# plain AMQP: " + (f"only on {plain}, this host's own tools (make broker)" if plain else "none"),
        f"listeners.tcp.default = {plain}" if plain else "listeners.tcp = none",
        f"listeners.ssl.default = {tls_port}",
        f"ssl_options.cacertfile = {folder}/ca.pem",
        f"ssl_options.certfile = {folder}/server.pem",
        f"ssl_options.keyfile = {folder}/server.key",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
    ]
    return "\n".join(lines) + "\n"


def provision_broker(broker: str, env_path: Path, vhost: str | None = None, user: str | None = None) -> str:
    """What the workers' broker needs in .env: `host` creates the vhost and user on the host's RabbitMQ,
    `compose` and `cluster` only write them (the containers create them). Returns the line to print."""
    return PROVISIONERS[broker](env_path, vhost, user)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = command_parser(prog, DESCRIPTION, EPILOG)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vhost", help=f"default: the project's name, dts-<hash of its folder> (<= {MAX_NAME} chars)")
    parser.add_argument("--user", help="default: the same as the vhost")
    parser.add_argument(
        "--env-file", type=Path, help="where the credentials go (default: .env beside the project's config)"
    )
    parser.add_argument(
        "--compose",
        action="store_true",
        help="for the compose `broker` service: write .env only (vhost, user, password, host port "
        "DTS_BROKER_PORT: 5672, else 5674); the container creates them",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="for the compose `cluster` profile (three RabbitMQ nodes): write .env (vhost, user, password, "
        "host ports DTS_CLUSTER_PORT_1..3: 5681..5683) and the cluster's Erlang cookie; the nodes create them",
    )
    parser.add_argument(
        "--tls-snippet",
        metavar="CERTDIR",
        type=Path,
        help="print the settings that give the host's RabbitMQ a TLS listener on 5671 (CERTDIR's ca.pem, "
        "server.pem, server.key; client certificates required) and keep plain AMQP on loopback only, for "
        "/etc/rabbitmq/conf.d/; nothing is changed or provisioned",
    )


def run(args: argparse.Namespace) -> int:
    if args.tls_snippet is not None:
        print(tls_snippet(str(args.tls_snippet.resolve())), end="")
        return ExitCode.OK
    if args.compose and args.cluster:
        raise CliError("--compose and --cluster are two different brokers: give one", ExitCode.USAGE)
    path = args.env_file or env_file(find_config(args.config).parent)
    broker = "cluster" if args.cluster else "compose" if args.compose else "host"
    print(provision_broker(broker, path, args.vhost, args.user))
    return ExitCode.OK


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_main(prog, build_parser(prog), run, argv)
