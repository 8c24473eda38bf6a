"""`code:`: the folders of your own tasks' modules. Local workers get them on their import path; the
container engines' image copies them under /app and puts them on its import path, its tag following their
content. Real workers, through the real broker: a module only `code:` makes importable runs on local
workers. Compose containers built from the package and a code: folder (its requirements.txt installed)
run the example's tasks in tests/test_example.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import CHECKOUT, fresh_vhost, local_fleet, run_cli, vhost_url

from dts.engines.image import context, worker_image

VHOST = f"dts-test-code-{CHECKOUT}"
JOBS = "def add(x=1, y=2):\n    return {'sum': x + y}\n"


def project(folder: Path, broker: str = "") -> Path:
    (folder / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "lib" / "codejobs.py").write_text(JOBS)
    config = folder / "test-config.yml"
    config.write_text(
        textwrap.dedent(f"""\
        name: Code folders
        {broker}
        pools:
          worker-a: {{queues: [queue_a], replicas: 1}}
          worker-b: {{queues: [queue_b], replicas: 1}}
          worker-c: {{queues: [queue_c], replicas: 1}}
        tasks:
          add: {{queue: queue_c, call: "codejobs:add", params: {{x: 1, y: 2}}}}
        code: [lib]
        engine: {{name: local, stop_timeout: 30, start_timeout: 120}}
        dispatch: {{timeout: 60, tasks: [add]}}
        """)
    )
    return config


def test_the_image_copies_the_code_folders_and_its_tag_follows_them(tmp_path):
    project(tmp_path)
    files = context(tmp_path, ("lib",))
    assert files["app/lib/codejobs.py"] == JOBS.encode()
    assert files["Dockerfile"].decode().endswith("COPY app/ /app/\nENV PYTHONPATH=/opt/dts:/app/lib\n")
    before = worker_image(tmp_path, {}, ("lib",))
    assert before != worker_image(tmp_path, {}), "the code is part of the tag"
    (tmp_path / "lib" / "codejobs.py").write_text(JOBS + "# changed\n")
    assert worker_image(tmp_path, {}, ("lib",)) != before


def test_a_code_folders_requirements_are_installed_in_the_image(tmp_path):
    project(tmp_path)
    plain = context(tmp_path, ("lib",))["Dockerfile"].decode()
    (tmp_path / "lib" / "requirements.txt").write_text("pytest==9.2.0\n")
    dockerfile = context(tmp_path, ("lib",))["Dockerfile"].decode()
    assert "pip install" not in plain.split("(dts.engines.image)")[1]
    assert dockerfile.endswith(
        "USER root\nRUN /opt/venv/bin/pip install -r /app/lib/requirements.txt\nUSER 10001:10001\n"
    )


def test_a_code_folder_must_be_inside_the_project(tmp_path):
    from dts.config import load_settings
    from dts.errors import ConfigError

    config = project(tmp_path / "lab")
    config.write_text(config.read_text().replace("code: [lib]", "code: [../elsewhere]"))
    with pytest.raises(ConfigError, match=r"code must be an existing folder inside the project"):
        load_settings(config)


@pytest.mark.integration
def test_local_workers_import_from_the_code_folders(rabbitmq, tmp_path):
    fresh_vhost(VHOST)
    config = project(tmp_path / "lab", f'broker: {{url: "{vhost_url(VHOST)}"}}')
    with local_fleet(config, vhost_url(VHOST), tmp_path / "run"):
        proc = run_cli("dispatch.py", "--config", str(config), "--no-save", "--json", "--task", "add:x=5",
                       env={"BROKER_URL": vhost_url(VHOST)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["result"]["value"] == {"sum": 7} and task["result"]["worker"].startswith("worker-c@")
