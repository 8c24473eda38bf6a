"""TLS to the broker: a RabbitMQ node of its own with a TLS listener that requires a client certificate,
on certificates made here with openssl (a CA, the broker's for localhost, a client's, and a second CA that
signed nothing the broker shows). Real local workers connect over TLS, dispatch.py gets both results over
amqps://, and each TLS failure (unknown CA, no client certificate, a name the certificate does not carry)
is one line on stderr and exit 3.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, free_node_port, free_port, local_fleet, require_rabbitmq_server, start_node, write_config

from dts.cli.broker import tls_snippet

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

NODE = "dts-tls@localhost"


def openssl(cwd, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d) -> None:
    """ca.pem signs server.pem (localhost, 127.0.0.1, and `broker`: the compose broker service's name, see
    test_tls_broker.py) and client.pem; other-ca.pem signs nothing used."""
    for ca in ("ca", "other-ca"):
        openssl(
            d,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-days",
            "2",
            "-subj",
            f"/CN=dts-test-{ca}",
        )
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,DNS:broker,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "dts-client")):
        openssl(
            d,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        openssl(
            d,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """The node, its TLS port and the folder of certificates (the node reads its own copies)."""
    require_rabbitmq_server("the TLS test runs a node of its own, with a TLS listener")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (the TLS test makes its certificates with it)")
    certs = tmp_path_factory.mktemp("certs")
    make_certificates(certs)
    port, tls_port = free_node_port(), free_port()

    def prepare(base):
        (base / "tls").mkdir()
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy(certs / name, base / "tls" / name)

    # the settings `dts broker --tls-snippet` prints for a host's RabbitMQ (plain AMQP on loopback only)
    conf = tls_snippet("{base}/tls", tls_port, plain=f"127.0.0.1:{port}")
    broker = start_node(NODE, port, conf, prepare)
    yield broker, tls_port, certs
    broker.shutdown()


def tls_config(path, tls_port: int, certs, **tls: str):
    """A test config on the TLS listener; `tls` sets broker.tls keys (None drops one)."""
    keys = {
        "ca_file": str(certs / "ca.pem"),
        "cert_file": str(certs / "client.pem"),
        "key_file": str(certs / "client.key"),
        **tls,
    }
    write_config(path, replicas="1", timeout="20")
    url = f"amqps://guest:guest@localhost:{tls_port}//"
    lines = "".join(f"    {k}: {v}\n" for k, v in keys.items() if v is not None)
    text = path.read_text().replace("  connect_timeout: 5\n", f"  connect_timeout: 5\n  tls:\n{lines}", 1)
    path.write_text(text.replace("url: amqp://", "url: amqps://", 1))
    return path, url


def dispatch(config, url: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "BROKER_URL": url, "DTS_CONFIG": str(config), "CI": "true"}
    return subprocess.run(
        [sys.executable, "dispatch.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )


def test_dispatch_over_tls_with_local_workers(tls_broker, tmp_path):
    broker, tls_port, certs = tls_broker
    config, url = tls_config(tmp_path / "tls.yml", tls_port, certs)
    with local_fleet(config, url, tmp_path / "run"):
        # every connection to the node (workers, and their event/control channels) is a TLS one
        rows = [line.split() for line in broker.ctl("list_connections", "-s", "ssl", "peer_port").splitlines()]
        assert rows and all(row[0] == "true" for row in rows), rows
        proc = dispatch(config, url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "task_a" in proc.stdout and "task_b" in proc.stdout
    assert "worker-a@" in proc.stdout and "worker-b@" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("tls", "cause"),
    [
        ({"ca_file": "{certs}/other-ca.pem"}, "ca_file"),
        ({"cert_file": None, "key_file": None}, "client certificate"),
        ({"server_hostname": "evil.example"}, "server_hostname"),
    ],
    ids=["wrong-ca", "no-client-cert", "wrong-hostname"],
)
def test_tls_failure_is_one_line_exit_3(tls_broker, tmp_path, tls, cause):
    _, tls_port, certs = tls_broker
    tls = {k: v.format(certs=certs) if v else v for k, v in tls.items()}
    config, url = tls_config(tmp_path / "tls.yml", tls_port, certs, **tls)
    proc = dispatch(config, url)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert cause in lines[0], lines[0]
