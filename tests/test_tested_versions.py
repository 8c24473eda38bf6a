"""The table of tested versions (docs/samples/tested-versions.json, drawn into docs/deploy/compose.md by
scripts/docs_reference.py) names what exists and what runs here: every RabbitMQ line the project builds and
every Compose it picks, each with the modules and tests that run on it; the host's RabbitMQ and each Compose
report the exact version the table names (the broker containers' versions are checked by the tests that run
them: test_broker_rabbitmq4.py, test_broker_compose.py, test_cluster.py).
"""

from __future__ import annotations

import ast

import pytest
from helpers import IN_CI, ROOT, check_compose_version, compose_problem, need_engine, versions_tested


def test_the_table_names_each_line_and_compose_and_tests_that_exist():
    from dts.engines.docker import COMPOSES
    from dts.engines.image import DEFAULT_RABBITMQ, RABBITMQ_LINES

    table = versions_tested()
    assert list(table["rabbitmq"]) == list(RABBITMQ_LINES)  # every line --rabbitmq offers, in its order
    assert list(table["compose"]) == list(COMPOSES)
    assert [line for line, e in table["rabbitmq"].items() if e.get("host")] == [DEFAULT_RABBITMQ]
    for kind in ("rabbitmq", "compose"):
        for name, entry in table[kind].items():
            assert entry["version"] and entry["package"] and entry["tests"], (kind, name)
            for module, scope in entry["tests"].items():
                defined = {
                    node.name
                    for node in ast.walk(ast.parse((ROOT / module).read_text()))
                    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                }
                named = [] if scope == "all" else [test.split("[")[0] for test in scope]
                assert scope == "all" or (named and set(named) <= defined), (kind, name, module, scope)


@pytest.mark.integration
def test_the_host_broker_is_the_tested_version(rabbitmq):
    """The version the node itself announces to a client (AMQP's server properties), not its CLI's."""
    from kombu import Connection

    with Connection(rabbitmq) as conn:
        reported = conn.connection.server_properties["version"]
        reported = reported.decode() if isinstance(reported, bytes) else reported
    expected = versions_tested()["rabbitmq"]["3.10"]["version"]
    if reported != expected:
        why = f"the host's RabbitMQ is {reported}, not {expected} as docs/samples/tested-versions.json says"
        if IN_CI:
            pytest.fail(f"CI=true and {why}: CI installs Debian 12's (scripts/ensure-broker.sh), or update the file")
        pytest.skip(f"{why}: CI runs on that one")


@pytest.mark.docker
@pytest.mark.parametrize("compose", ["docker compose", "docker-compose"])
def test_each_compose_is_the_tested_version(compose, monkeypatch):
    need_engine(compose_problem())
    monkeypatch.setenv("DTS_COMPOSE", compose)
    assert check_compose_version() == compose
