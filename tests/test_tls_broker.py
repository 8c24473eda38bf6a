"""The broker's own TLS: the compose `broker` service with DTS_BROKER_TLS_DIR (a folder of ca.pem, server.pem,
server.key made here with openssl, test_tls.make_certificates) listens on TLS only and requires a client
certificate. On a real Docker engine: a plain AMQP connection is refused on both of its ports, a TLS one
verified against the CA works (one verified against another CA does not), the workers in compose reach it over
amqps://broker:5671, and a dispatch from the host over amqps:// gets both results from them.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess

import amqp
import pytest
from helpers import CHECKOUT, compose_broker_stack, free_port, run_cli
from test_tls import make_certificates, tls_config

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    certs = tmp_path_factory.mktemp("broker-tls")
    make_certificates(certs)
    # the broker container's rabbitmq user reads the folder through its group (the engine adds the folder's
    # group to the container); the workers' user (uid 10001) reads the client's files (compose bind-mounts them)
    certs.chmod(0o750)
    for name in ("ca.pem", "server.pem", "server.key"):
        (certs / name).chmod(0o640)
    for name in ("ca.pem", "client.pem", "client.key"):
        (certs / name).chmod(0o644)
    tls_port = free_port()
    config, _ = tls_config(tmp_path_factory.mktemp("tb") / "tb.yml", tls_port, certs)
    user = vhost = f"dts-tb-{CHECKOUT}"
    password = secrets.token_hex(12)
    env = {
        "DTS_BROKER_TLS_DIR": str(certs),
        "DTS_BROKER_TLS_PORT": str(tls_port),
        "DTS_BROKER_USER": user,
        "DTS_BROKER_PASSWORD": password,
        "DTS_BROKER_VHOST": vhost,
        # the host's CLIs: the TLS port on the host's name the certificate carries, broker.tls's files
        "BROKER_URL": f"amqps://{user}:{password}@localhost:{tls_port}/{vhost}",
    }
    with compose_broker_stack(config, "tb", extra_env=env) as stack:
        (cid,) = stack["engine"].containers("broker")
        yield {**stack, "certs": certs, "tls_port": tls_port, "broker": cid}


def in_broker(stack, *argv: str) -> str:
    proc = subprocess.run(["docker", "exec", stack["broker"], *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def plain_login(port: int, env: dict[str, str]) -> None:
    """A plain AMQP connection and login (raises when the broker does not take it)."""
    conn = amqp.Connection(
        f"127.0.0.1:{port}",
        userid=env["DTS_BROKER_USER"],
        password=env["DTS_BROKER_PASSWORD"],
        virtual_host=env["DTS_BROKER_VHOST"],
        connect_timeout=5,
    )
    try:
        conn.connect()
    finally:
        conn.collect()


def test_plain_amqp_is_refused_on_both_ports(tls_stack):
    env = tls_stack["env"]
    listeners = in_broker(tls_stack, "rabbitmq-diagnostics", "-q", "listeners")
    protocols = {line.split("protocol: ")[1].split(",")[0] for line in listeners.splitlines() if "protocol: " in line}
    assert "port: 5671, protocol: amqp/ssl" in listeners, listeners
    assert "amqp" not in protocols, listeners  # listeners.tcp = none: no plain AMQP listener at all
    for port in (tls_stack["tls_port"], int(env["DTS_BROKER_PORT"])):  # the TLS one, and the old plain one
        with pytest.raises((OSError, amqp.exceptions.AMQPError)) as refused:
            plain_login(port, env)
        print(f"plain AMQP on {port}: {refused.value!r}")
        plain = env["BROKER_URL"].replace("amqps://", "amqp://").replace(f":{tls_stack['tls_port']}/", f":{port}/")
        proc = run_cli("dispatch.py", env={**env, "BROKER_URL": plain})
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 3 and len(lines) == 1, proc.stdout + proc.stderr  # unreachable, in one line
        print(lines[0])


def test_a_tls_connection_verified_against_the_ca_works_and_another_ca_is_refused(tls_stack):
    certs, port = tls_stack["certs"], tls_stack["tls_port"]

    def handshake(ca: str) -> dict:
        context = ssl.create_default_context(cafile=str(certs / ca))
        context.load_cert_chain(certs / "client.pem", certs / "client.key")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert()

    peer = handshake("ca.pem")
    assert ("DNS", "broker") in peer["subjectAltName"], peer
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("other-ca.pem")
    with tls_stack["app"].connection_for_write() as conn:  # the project's own connection: broker.tls's files
        conn.ensure_connection(max_retries=1)
        assert conn.transport.__class__.__name__ == "SSLTransport"


def test_dispatch_over_amqps_gets_both_results_from_the_compose_workers(tls_stack):
    engine, env = tls_stack["engine"], tls_stack["env"]
    nodes = engine.workers()
    cid = engine.containers("worker-a")[0]
    inspect = ["docker", "inspect", "-f", "{{json .Config.Env}}", cid]
    worker_env = json.loads(subprocess.run(inspect, capture_output=True, text=True, timeout=30).stdout)
    url = next(e.split("=", 1)[1] for e in worker_env if e.startswith("BROKER_URL="))
    assert url.startswith("amqps://") and url.endswith(f"@broker:5671/{env['DTS_BROKER_VHOST']}"), url
    proc = run_cli("dispatch.py", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {t["task"]: t["result"] for t in json.loads(proc.stdout)["tasks"]}
    assert results["task_a"]["worker"] in nodes["worker-a"], results
    assert results["task_b"]["worker"] in nodes["worker-b"], results
    # every connection the broker has (the workers', and their control and event channels) is a TLS one
    rows = in_broker(tls_stack, "rabbitmqctl", "-q", "list_connections", "--no-table-headers", "ssl").split()
    assert rows and set(rows) == {"true"}, rows
