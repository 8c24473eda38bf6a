"""The toolkit as a user installs it: `pip install <checkout>` (not editable) into a fresh venv outside the
checkout, then, in an empty folder of the user's own, `dts init`, `dts up`, `dts dispatch`, `dts scale`,
`dts status`, `dts down` against the real RabbitMQ, with real workers (local processes; containers built
from the installed package with the compose engine). Two such folders run side by side on one broker
without touching each other's queues or workers.

Nothing from the test session's environment reaches these commands (no BROKER_URL, no DTS_*): `dts up`
provisions the project's own vhost and user, as a user's first run does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from helpers import ROOT, compose_problem, need_engine

pytestmark = pytest.mark.integration
INSTALL_TIMEOUT = 900  # seconds: pip builds the wheel and installs Celery & co. from the index
COMMAND_TIMEOUT = 300  # one dts command (an image build with the compose engine is the longest)
LOCAL_STATE = (".git", ".venv", ".run", ".env", "build", "*.egg-info", "results", "site", "deploy", "__pycache__")
SEED_LINES = (
    "Result from task_a: Hello from Task A",
    "Task A retries: 0",
    "Result from task_b: Hello from Task B",
    "Task B retries: 0",
)


@pytest.fixture(scope="module")
def dts_bin(rabbitmq, tmp_path_factory) -> Path:
    """The `dts` script of a fresh venv (outside the checkout) where the checkout was pip-installed."""
    where = tmp_path_factory.mktemp("user-venv") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    # the checkout as a clone has it (pip builds in the folder it installs: build/ stays out of this one)
    checkout = where.parent / "checkout"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=shutil.ignore_patterns(*LOCAL_STATE))
    proc = subprocess.run(
        [where / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", str(checkout)],
        cwd=where.parent,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    located = subprocess.run(
        [where / "bin" / "python", "-c", "import dts, sys; print(dts.__file__)"],
        cwd=where.parent,
        env=user_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(str(where)), located  # the installed copy, not this checkout
    return where / "bin" / "dts"


def user_env() -> dict[str, str]:
    """A user's shell: none of the test session's broker, config, run or result settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTS_", "BROKER_", "COMPOSE_"))}
    env.pop("LOG_FORMAT", None)
    env.pop("PYTHONPATH", None)
    env["CI"] = ""  # plain lines, whatever the caller
    return env


def dts(bin_: Path, folder: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(bin_), *args], cwd=folder, env=user_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if ok:
        assert proc.returncode == 0, f"dts {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def running(bin_: Path, folder: Path) -> dict[str, int]:
    """{pool: workers that answer} from `dts status --json` in the folder."""
    doc = json.loads(dts(bin_, folder, "status", "--json").stdout)
    return {pool["pool"]: pool["alive"] for pool in doc["pools"]}


def forget_project(folder: Path) -> None:
    """Delete the vhost and user `dts up` made for the folder (named in its .env)."""
    from dts.config import read_env_file
    from dts.errors import CliError
    from dts.provision import rabbitmqctl

    values = read_env_file(folder / ".env")
    for command, name in (("delete_vhost", "DTS_BROKER_VHOST"), ("delete_user", "DTS_BROKER_USER")):
        if values.get(name):
            try:
                rabbitmqctl(command, values[name])
            except CliError:
                pass


@pytest.fixture
def project(dts_bin, tmp_path):
    """An empty folder of the user's own; afterwards its workers stopped and its vhost and user deleted."""
    folder = tmp_path / "my-lab"
    folder.mkdir()
    yield folder
    if (folder / "test-config.yml").exists():
        subprocess.run([str(dts_bin), "down"], cwd=folder, env=user_env(), capture_output=True, timeout=COMMAND_TIMEOUT)
    forget_project(folder)


def first_run(dts_bin: Path, folder: Path, engine: str) -> None:
    """init, up, dispatch, scale, status, down: each exit 0, with what a user expects to read."""
    init = dts(dts_bin, folder, "init")
    assert (folder / "test-config.yml").is_file() and "dts up" in init.stdout
    refused = dts(dts_bin, folder, "init", ok=False)
    assert refused.returncode == 2 and "exists: nothing was overwritten" in refused.stderr
    up = dts(dts_bin, folder, "up", "--engine", engine)
    assert "worker-a: 1 worker(s) up" in up.stdout and (folder / ".env").is_file()
    out = dts(dts_bin, folder, "dispatch").stdout
    for line in SEED_LINES:
        assert line in out, out
    assert "Isolation: OK (task_a on worker-a, task_b on worker-b)" in out
    assert list((folder / "results").glob("dispatch-*.json")), "the result file goes beside the config"
    dts(dts_bin, folder, "scale", "worker-a", "2")
    assert running(dts_bin, folder) == {"worker-a": 2, "worker-b": 1}
    down = dts(dts_bin, folder, "down")
    assert f"{engine}: stopped 3 worker(s)" in down.stdout


def test_version_and_help_from_the_installed_package(dts_bin, tmp_path):
    from dts import __version__

    assert dts(dts_bin, tmp_path, "--version").stdout.strip() == f"dts {__version__}"
    assert "dts init" in dts(dts_bin, tmp_path, "--help").stdout
    missing = dts(dts_bin, tmp_path, "status", ok=False)
    assert missing.returncode == 2 and "run `dts init`" in missing.stderr and "Traceback" not in missing.stderr


def test_a_new_folder_runs_with_the_local_engine(dts_bin, project):
    first_run(dts_bin, project, "local")
    assert (project / ".run" / "supervisord.conf").is_file()  # the run state beside the config


@pytest.mark.docker
def test_a_new_folder_runs_with_the_compose_engine(dts_bin, project):
    need_engine(compose_problem())
    first_run(dts_bin, project, "compose")
    tag = dts(dts_bin, project, "engine", "--engine", "compose", "--image").stdout.strip()
    assert tag.startswith("dts-") and "-worker:" in tag and not tag.endswith(":latest"), tag  # per project
    assert subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def test_two_folders_side_by_side_keep_their_queues_and_workers(dts_bin, tmp_path):
    folders = [tmp_path / "lab-1", tmp_path / "lab-2"]
    try:
        for folder in folders:
            folder.mkdir()
            dts(dts_bin, folder, "init")
            dts(dts_bin, folder, "up", "--engine", "local")
        vhosts = [
            next(line for line in (f / ".env").read_text().splitlines() if line.startswith("DTS_BROKER_VHOST="))
            for f in folders
        ]
        assert vhosts[0] != vhosts[1], vhosts
        assert [running(dts_bin, f) for f in folders] == [{"worker-a": 1, "worker-b": 1}] * 2
        dts(dts_bin, folders[0], "scale", "worker-a", "2")
        assert running(dts_bin, folders[1]) == {"worker-a": 1, "worker-b": 1}  # the other's resize is not ours
        dts(dts_bin, folders[0], "down")
        assert running(dts_bin, folders[1]) == {"worker-a": 1, "worker-b": 1}  # nor its stop
        out = dts(dts_bin, folders[1], "dispatch", "--quiet").stdout
        assert out.splitlines() == ["task_a: Hello from Task A", "task_b: Hello from Task B"]
    finally:
        for folder in folders:
            if (folder / "test-config.yml").exists():
                subprocess.run(
                    [str(dts_bin), "down"], cwd=folder, env=user_env(), capture_output=True, timeout=COMMAND_TIMEOUT
                )
            forget_project(folder)


def test_the_package_carries_its_data_files(dts_bin):
    """The image recipes, the compose template, the base-image fallback, the starter config, the pins."""
    python = dts_bin.parent / "python"
    listed = subprocess.run(
        [
            python,
            "-c",
            "import dts.files as f; print('\\n'.join(sorted(str(p.relative_to(f.DATA_DIR)) "
            "for p in f.DATA_DIR.rglob('*') if p.is_file())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == [
        "Dockerfile",
        "base_image.sh",
        "broker/Dockerfile",
        "broker/entrypoint.sh",
        "broker/rabbitmq-4.conf",
        "docker-compose.yml",
        "requirements.txt",
        "test-config.yml",
    ]
