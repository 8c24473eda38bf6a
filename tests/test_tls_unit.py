"""Unit tests (no broker, no Docker): broker.tls delivered to each container engine, and TLS failures as one line."""

from __future__ import annotations

import ssl

import pytest
from helpers import write_config

from dts.amqp.checks import broker_error
from dts.config import broker_url_from_env_file, load_settings, parse_settings
from dts.engines.compose import render_pools
from dts.engines.containers import worker_template
from dts.engines.swarm import WORKER_UID, render_stack
from dts.errors import CliError, ExitCode

URL = "amqps://dts:s3cret@rabbit.example:5671/dts"


@pytest.fixture
def tls_settings(tmp_path):
    path = write_config(tmp_path / "c.yml")
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    text = path.read_text().replace(
        "  connect_timeout: 5\n",
        "  connect_timeout: 5\n  tls: {ca_file: ca.pem, "
        "cert_file: client.pem, key_file: client.key, server_hostname: rabbit.example}\n",
    )
    path.write_text(text)
    return load_settings(path)


def test_compose_mounts_the_tls_files_read_only_and_points_the_workers_at_them(tls_settings, tmp_path):
    service = render_pools(tls_settings, worker_template())["services"]["worker-a"]
    env = service["environment"]
    assert env["BROKER_TLS_CA_FILE"] == "/run/secrets/dts_tls_ca_file.pem"
    assert env["BROKER_TLS_KEY_FILE"] == "/run/secrets/dts_tls_key_file.pem"
    assert f"{tmp_path}/ca.pem:/run/secrets/dts_tls_ca_file.pem:ro" in service["volumes"]
    assert f"{tmp_path}/client.key:/run/secrets/dts_tls_key_file.pem:ro" in service["volumes"]
    assert env["BROKER_URL"].startswith("amqps://") and "${DTS_BROKER_TLS_PORT:-5671}" in env["BROKER_URL"]


def test_compose_without_tls_is_unchanged(tmp_path):
    settings = load_settings(write_config(tmp_path / "c.yml"))
    service = render_pools(settings, worker_template())["services"]["worker-a"]
    assert service["environment"]["BROKER_URL"].startswith("amqp://")
    assert not any(k.startswith("BROKER_TLS") for k in service["environment"])
    assert all("dts_tls" not in v for v in service["volumes"])


def test_swarm_delivers_the_tls_files_as_secrets_readable_by_the_worker_alone(tls_settings, tmp_path):
    doc = render_stack(
        tls_settings, "img:t", tmp_path / "url", "s_url_1", "s_config_1", tls_names={"BROKER_TLS_CA_FILE": "s_ca_1"}
    )
    assert doc["secrets"]["broker_tls_ca_file"] == {"name": "s_ca_1", "file": str(tmp_path / "ca.pem")}
    assert doc["secrets"]["broker_tls_key_file"]["file"] == str(tmp_path / "client.key")
    service = doc["services"]["worker-b"]
    secret = next(s for s in service["secrets"] if s["source"] == "broker_tls_key_file")
    assert secret == {
        "source": "broker_tls_key_file",
        "target": "dts_tls_key_file.pem",
        "uid": WORKER_UID,
        "gid": WORKER_UID,
        "mode": 0o400,
    }
    assert service["environment"]["BROKER_TLS_CERT_FILE"] == "/run/secrets/dts_tls_cert_file.pem"


def test_a_worker_in_a_container_loads_the_mounted_files(tls_settings, tmp_path):
    """The env an engine sets replaces the host paths of the mounted config with the paths in the container."""
    mounted = tmp_path / "in-container"
    mounted.mkdir()
    (mounted / "ca.pem").write_text("pem")
    doc = {
        "pools": {"a": {"queues": ["queue_a"]}, "b": {"queues": ["queue_b"]}},
        "broker": {"url": URL, "tls": {"ca_file": "/host/only/ca.pem"}},
    }
    s = parse_settings(doc, tmp_path / "c.yml", {"BROKER_TLS_CA_FILE": str(mounted / "ca.pem")})
    assert s.broker.tls.ca_file == str(mounted / "ca.pem")


def test_env_file_url_for_tls_containers():
    values = {"DTS_BROKER_USER": "u", "DTS_BROKER_PASSWORD": "p", "DTS_BROKER_VHOST": "v"}
    assert broker_url_from_env_file(values, host="h", tls=True) == "amqps://u:p@h:5671/v"
    assert broker_url_from_env_file({**values, "DTS_BROKER_TLS_PORT": "5673"}, tls=True).endswith("@localhost:5673/v")
    assert broker_url_from_env_file(values) == "amqp://u:p@localhost:5672/v"


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (verify_error("self-signed certificate in certificate chain"), "broker.tls.ca_file must be the CA"),
        (verify_error("Hostname mismatch, certificate is not valid for 'x'."), "set broker.tls.server_hostname"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "it requires a client certificate"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "the broker's TLS listener"),
    ],
    ids=["unknown-ca", "hostname", "client-cert", "plain-port"],
)
def test_tls_failures_name_their_cause_without_the_password(exc, cause):
    wrapped = ConnectionError("wrapped")
    wrapped.__cause__ = exc  # kombu may raise its own error from the TLS one
    for error in (broker_error(URL, exc), broker_error(URL, wrapped)):
        assert error.exit_code == ExitCode.BROKER_UNREACHABLE
        text = str(error)
        assert cause in text and "s3cret" not in text and "\n" not in text, text


# ------------------------------------------------------------- the compose broker's own TLS listener


def test_compose_workers_use_the_broker_services_tls_listener(tls_settings):
    env = render_pools(tls_settings, worker_template(), broker="compose", broker_tls=True)["services"]["worker-a"]
    env = env["environment"]
    assert env["BROKER_URL"].startswith("amqps://") and env["BROKER_URL"].endswith(
        "@broker:5671/${DTS_BROKER_VHOST:-dts}"
    )
    assert env["BROKER_TLS_CA_FILE"] == "/run/secrets/dts_tls_ca_file.pem"
    plain = render_pools(tls_settings, worker_template(), broker="compose")["services"]["worker-a"]["environment"]
    assert plain["BROKER_URL"].startswith("amqp://") and "@broker:5672/" in plain["BROKER_URL"]


def test_the_broker_service_gets_the_folder_read_only_its_group_and_the_tls_port(tmp_path):
    from dts.engines.compose import render_broker_tls

    svc = render_broker_tls(tmp_path, [1000, 1000, 0])
    assert svc["environment"] == {"DTS_BROKER_TLS_DIR": "/run/dts-broker-tls"}
    assert svc["volumes"] == [f"{tmp_path}:/run/dts-broker-tls:ro"]
    assert svc["ports"] == ["${DTS_BROKER_TLS_PORT:-5671}:5671"]  # every interface: other hosts reach it
    assert svc["group_add"] == ["1000", "0"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-key", "has no server.key"),
        ("no-broker-tls", "has no broker.tls"),
        ("cluster", "not of --broker cluster"),
        ("official-image", "needs the project's broker image"),
    ],
)
def test_a_tls_broker_that_cannot_work_is_exit_2_before_any_container(tls_settings, tmp_path, case, message):
    from dts.engines.compose import ComposeEngine
    from dts.engines.docker import compose_command

    if compose_command() is None:
        pytest.skip("ComposeEngine needs a compose command")
    certs = tmp_path / "broker-certs"
    certs.mkdir()
    for name in ("ca.pem", "server.pem", "server.key"):
        (certs / name).write_text("pem")
    settings = tls_settings
    env = {"DTS_BROKER_TLS_DIR": str(certs), "DTS_IMAGE": "img:t"}
    if case == "missing-key":
        (certs / "server.key").unlink()
    if case == "no-broker-tls":
        settings = load_settings(write_config(tmp_path / "plain.yml"))
    if case == "official-image":
        env["DTS_BROKER_IMAGE"] = "rabbitmq:4-management"
    broker = "cluster" if case == "cluster" else "compose"
    engine = ComposeEngine(settings, None, project="p", env=env, run_dir=tmp_path / "run", broker=broker)
    with pytest.raises(CliError) as err:
        engine.write_pools_file()
    assert err.value.exit_code == ExitCode.USAGE and message in str(err.value), str(err.value)
    engine = ComposeEngine(settings, None, project="p", env={"DTS_IMAGE": "img:t"}, run_dir=tmp_path / "run")
    assert engine.broker_tls_dir() is None  # unset, or the host's broker: nothing changes


def test_the_host_snippet_and_the_compose_entrypoint_write_the_same_tls_settings():
    from dts.cli.broker import tls_snippet
    from dts.engines.image import BROKER_RECIPE

    entrypoint = (BROKER_RECIPE / "entrypoint.sh").read_text().splitlines()
    settings = [line for line in tls_snippet("$tls", plain=None).splitlines() if not line.startswith("#")]
    assert "listeners.tcp = none" in settings and all(line in entrypoint for line in settings), settings
    host = tls_snippet("/etc/rabbitmq/tls")
    assert "listeners.tcp.default = 127.0.0.1:5672\n" in host and "ssl_options.fail_if_no_peer_cert = true" in host
