"""One compose broker data volume, two RabbitMQ lines: `up` notes the line whose node came up on the
`broker-data` volume and refuses, before any container starts, an `up` of another line while that volume
exists (a node does not boot on another line's data). On a real Docker engine, in a compose project,
vhost and port of the test's own; the second line is never booted (its refusal comes first).
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import compose_broker_stack, run_cli, write_config

from dts.engines.image import BROKER_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

UP_43 = ("scale.py", "up", "--engine", "compose", "--broker", "compose", "--rabbitmq", "4.3")


def project_containers(project: str) -> list[str]:
    """'<name> <image> <state>' of every container of the compose project, running or not."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            "{{.Names}} {{.Image}} {{.State}}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return sorted(out.stdout.split("\n")[:-1])


def assert_refused(proc: subprocess.CompletedProcess, volume: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()  # one line, no traceback
    for words in (volume, "RabbitMQ 3.10's data", "4.3", "make down BROKER=compose VOLUMES=1", "queued messages"):
        assert words in line, line


def test_an_up_of_another_line_on_the_same_volume_is_refused_before_anything_starts(tmp_path):
    cfg = write_config(tmp_path / "line.yml", replicas="0")  # the broker only: no worker to wait for
    with compose_broker_stack(cfg, "line") as stack:
        env, project, engine = stack["env"], stack["project"], stack["engine"]
        volume = f"{project}_broker-data"
        assert engine.line_record().read_text() == "3.10\n"
        running = project_containers(project)
        assert running == [f"{project}-broker-1 {BROKER_IMAGE} running"], running

        assert_refused(run_cli(*UP_43, env=env), volume)
        assert project_containers(project) == running  # the 3.10 node untouched, nothing else started

        down = run_cli("scale.py", "down", "--engine", "compose", "--broker", "compose", env=env, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        assert_refused(run_cli(*UP_43, env=env), volume)  # the volume outlives its container
        assert project_containers(project) == []
        assert engine.line_record().read_text() == "3.10\n"
    # compose_broker_stack ended with `down --volumes`: the data and the note of its line are gone
    assert not engine.line_record().exists()
