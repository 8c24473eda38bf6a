"""The start by a user who is not root (issue 32, item 7): `make run` on a host whose RabbitMQ runs but
only root can manage (Debian's rabbitmqctl: "Only root or rabbitmq should run rabbitmqctl").

A throwaway system user (made here, deleted after) gets a copy of this checkout in a folder of its own and
a venv it can run. Its first `make run` writes .env (mode 600, its own) and stops with one line and the
exact `sudo rabbitmqctl` commands, having created nothing on the broker; the commands, run as root exactly
as printed, create what .env names; its next `make run` logs in and dispatches to local workers. The
management HTTP API is pointed at a closed port (DTS_MANAGEMENT_API), so the commands are the only way in.

Needs root (useradd, and the printed sudo commands): skipped otherwise, failed under CI=true (CI runs as root).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from helpers import IN_CI, ROOT, free_port, require_rabbitmq_server

pytestmark = pytest.mark.integration
TIMEOUT = 300  # seconds for one command of the user (the second `make run` starts workers and dispatches)
COPY_IGNORE = (".git", ".venv", ".run", ".env", "build", "*.egg-info", "results", "site", "deploy", "__pycache__")
COPY_IGNORE += (".pytest_cache", ".ruff_cache")
ONLY_ROOT = "Only root or rabbitmq should run rabbitmqctl"


def need_root() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "not root: this test makes a throwaway system user (useradd) and runs the printed sudo commands"
    elif not all(shutil.which(tool) for tool in ("useradd", "userdel", "setpriv", "make")):
        problem = "useradd, userdel, setpriv or make is not installed"
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    require_rabbitmq_server("the non-root path is rabbitmqctl refusing a user")


@contextlib.contextmanager
def throwaway_user(*groups: str):
    """A system user of this test (no home, no password), deleted after with every process it still runs."""
    name = f"dtsnr{os.getpid()}{secrets.token_hex(2)}"
    extra = ["-G", ",".join(groups)] if groups else []
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", *extra, name],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    try:
        yield pwd.getpwnam(name)
    finally:
        left = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True).stdout.split()
        for pid in left:  # processes of this test's own user (make down stopped its workers already)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["userdel", name], capture_output=True)


def user_venv(user: pwd.struct_passwd, venv: Path, env: dict[str, str]) -> None:
    """A venv at `venv` that `user` can run, with this test's packages: made from a Python of this test's
    X.Y the user may run (this test's venv may sit in root's home), seeing this test's site-packages (its
    .pth files too: the editable install) behind the copy's code on PYTHONPATH."""
    reachable(Path(sysconfig.get_path("purelib")))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", sys._base_executable]
    tried = []
    for candidate in filter(os.path.exists, candidates):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([candidate, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        purelib = subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(purelib, "dts-under-test.pth").write_text(
            f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
        )
        probe = as_user(user, [venv / "bin" / "python", "-c", "import celery, kombu, supervisor, dts"], Path("/"), env)
        if probe.returncode == 0:
            return
        tried.append(f"{candidate}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    pytest.fail(f"no Python {version} venv the user can run with {sysconfig.get_path('purelib')}: {'; '.join(tried)}")


GRANTED: dict[Path, int] = {}  # folder: its mode before this test let others through it


def reachable(path: Path) -> None:
    """Let other users through every folder above `path` (this test's site-packages: a checkout may sit in a
    mode-700 folder, e.g. mktemp's); restored by restore_modes()."""
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH and folder not in GRANTED:
            GRANTED[folder] = stat.S_IMODE(mode)
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def restore_modes() -> None:
    while GRANTED:
        folder, mode = GRANTED.popitem()
        with contextlib.suppress(OSError):
            folder.chmod(mode)


def as_user(user: pwd.struct_passwd, argv: list, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`argv` as `user` (its uid, gid and groups) with exactly `env` as its environment."""
    become = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return subprocess.run([*become, *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@contextlib.contextmanager
def project_of(user: pwd.struct_passwd):
    """A copy of this checkout owned by `user` in a folder of /tmp it can reach (pytest's tmp dirs are 0700),
    with a venv at .venv that runs this test's packages, and the environment of the user's shell there.
    Yields (folder, env); afterwards its workers are stopped, its vhost and user deleted, the folder removed."""
    base = Path(tempfile.mkdtemp(prefix="dts-nonroot-", dir="/tmp"))
    base.chmod(0o755)
    folder, home = base / "checkout", base / "home"
    shutil.copytree(ROOT, folder, symlinks=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    home.mkdir()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(folder),  # the copy's code, for the workers too
        "DTS_MANAGEMENT_API": f"http://127.0.0.1:{free_port()}/api",  # nothing listens: rabbitmqctl or nothing
        "CI": "",
    }
    try:
        user_venv(user, folder / ".venv", env)
        (folder / ".venv" / ".installed").touch()  # newer than the copied requirements: `make install` does nothing
        for path in [folder, home, *folder.rglob("*"), *home.rglob("*")]:
            os.lchown(path, user.pw_uid, user.pw_gid)
        yield folder, env
    finally:
        if (folder / ".run").exists():
            as_user(user, ["make", "down"], folder, env)
        forget(folder / ".env")
        shutil.rmtree(base, ignore_errors=True)
        restore_modes()


def forget(env_file: Path) -> None:
    """Delete the vhost and user .env names on the broker (when they exist)."""
    from dts.config import read_env_file
    from dts.errors import CliError
    from dts.provision import rabbitmqctl

    values = read_env_file(env_file) if env_file.exists() else {}
    for command, key in (("delete_vhost", "DTS_BROKER_VHOST"), ("delete_user", "DTS_BROKER_USER")):
        if values.get(key):
            with contextlib.suppress(CliError):
                rabbitmqctl(command, values[key])


def printed_commands(stderr: str) -> tuple[str, list[str]]:
    """(the error line of `dts broker`, the commands printed under it)."""
    lines = stderr.splitlines()
    errors = [n for n, line in enumerate(lines) if line.startswith("dts broker: error: ")]
    assert len(errors) == 1, stderr
    after = lines[errors[0] + 1 :]
    return lines[errors[0]], [line.strip() for line in after if line.startswith("  sudo ")]


def on_broker(vhost: str, user: str) -> tuple[bool, bool]:
    from dts.provision import rabbitmqctl

    vhosts = rabbitmqctl("list_vhosts", "name").stdout.split()
    users = [line.split()[0] for line in rabbitmqctl("list_users").stdout.splitlines() if line.strip()]
    return vhost in vhosts, user in users


def docker_for(user: pwd.struct_passwd, folder: Path, env: dict[str, str]) -> bool:
    if not shutil.which("docker", path=env["PATH"]):
        return False
    return as_user(user, ["docker", "info"], folder, env).returncode == 0


@pytest.fixture(scope="module")
def nonroot():
    """A user with no root and no Docker group, and its copy of the checkout: (user, folder, env)."""
    need_root()
    with throwaway_user() as user, project_of(user) as (folder, env):
        yield user, folder, env


def test_make_run_without_root_prints_the_commands_then_runs_after_them(rabbitmq, nonroot):
    from dts.config import broker_url_from_env_file, read_env_file
    from dts.provision import login_works

    user, folder, env = nonroot
    first = as_user(user, ["make", "run", "ENGINE=local"], folder, env)
    assert first.returncode == 2, first.stdout + first.stderr  # GNU make's, for its recipe's exit 1:
    assert re.search(r"broker\] Error 1$", first.stderr, re.M), first.stderr  # `dts broker` exited 1
    assert "Traceback" not in first.stdout + first.stderr
    line, commands = printed_commands(first.stderr)
    assert "without root" in line and "management API: Connection refused" in line, line
    assert line.endswith(".env has the password: run these once, then again") and len(line) < 300, line

    env_file = folder / ".env"
    status = env_file.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600 and status.st_uid == user.pw_uid, oct(status.st_mode)
    values = read_env_file(env_file)
    vhost, name, password = values["DTS_BROKER_VHOST"], values["DTS_BROKER_USER"], values["DTS_BROKER_PASSWORD"]
    assert commands == [
        f"sudo rabbitmqctl add_vhost {vhost}",
        f"sudo rabbitmqctl add_user {name} {password} || sudo rabbitmqctl change_password {name} {password}",
        f"sudo rabbitmqctl set_permissions -p {vhost} {name} '.*' '.*' '.*'",
    ], first.stderr
    assert on_broker(vhost, name) == (False, False), "the first run created something on the broker"
    assert ("make run BROKER=compose" in first.stderr) == docker_for(user, folder, env), first.stderr

    # again before the commands ran: the same commands for the same credentials (nothing rotated)
    written = env_file.read_bytes()
    again = as_user(user, [folder / ".venv/bin/python", "-m", "dts", "broker"], folder, env)
    assert again.returncode == 1 and again.stdout == "", again.stdout + again.stderr
    assert printed_commands(again.stderr)[1] == commands
    assert env_file.read_bytes() == written

    for command in commands:  # as root, exactly as printed
        ran = subprocess.run(["sh", "-c", command.replace("sudo ", "")], capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, f"{command}: {ran.stdout}{ran.stderr}"
    assert on_broker(vhost, name) == (True, True)

    second = as_user(user, ["make", "run", "ENGINE=local"], folder, env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"broker vhost {vhost!r}, user {name!r}: ok" in second.stdout, second.stdout
    assert "Result from task_a: Hello from Task A" in second.stdout, second.stdout[-3000:]
    assert "Result from task_b: Hello from Task B" in second.stdout, second.stdout[-3000:]
    assert env_file.read_bytes() == written  # no hand-editing, no rewrite
    assert login_works(broker_url_from_env_file(values))


def test_a_broker_not_running_prints_the_exact_command_to_start_it(nonroot):
    """ensure-broker.sh (the first step of `make broker`) as a user without root, with RabbitMQ installed
    and nothing on the port: one command, the one that starts it on this host, and nothing run."""
    user, folder, env = nonroot
    proc = as_user(user, ["sh", "scripts/ensure-broker.sh"], folder, {**env, "DTS_BROKER_PORT": str(free_port())})
    systemd = shutil.which("systemctl") and subprocess.run(["systemctl", "is-system-running"]).returncode == 0
    start = "sudo systemctl start rabbitmq-server" if systemd else "sudo rabbitmq-server -detached"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[1:] == [f"  {start}"], proc.stderr
    assert "needs root" in proc.stderr.splitlines()[0]


def test_where_docker_answers_without_root_it_offers_the_broker_in_a_container(rabbitmq):
    need_root()
    from helpers import compose_problem, need_engine

    need_engine(compose_problem())
    try:
        grp.getgrnam("docker")
    except KeyError:
        pytest.skip("no `docker` group: this host's Docker is not for users without root")
    with throwaway_user("docker") as user, project_of(user) as (folder, env):
        if not docker_for(user, folder, env):
            pytest.skip("`docker info` fails for a member of the docker group here")
        proc = as_user(user, [folder / ".venv/bin/python", "-m", "dts", "broker"], folder, env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        line, commands = printed_commands(proc.stderr)
        assert "without root" in line and len(commands) == 3, proc.stderr
        offer = "  or, with no root, RabbitMQ in a container: make run BROKER=compose  (dts up --broker compose)"
        assert proc.stderr.splitlines()[-1] == offer, proc.stderr


def test_the_commands_quote_a_password_for_the_shell():
    """A password written into .env by hand reaches rabbitmqctl as one argument, whatever it holds."""
    from dts.provision import sudo_commands

    password = 'it\'s $HOME `id` \\ "x" ;&|* -'
    seen = []
    for command in sudo_commands("dts-v", "dts-u", password):  # printf succeeds: `|| change_password` never runs
        shown = command.replace("sudo rabbitmqctl", "printf '%s\\n'")
        seen.append(subprocess.run(["sh", "-c", shown], capture_output=True, text=True, check=True).stdout)
    assert [out.splitlines() for out in seen] == [
        ["add_vhost", "dts-v"],
        ["add_user", "dts-u", password],
        ["set_permissions", "-p", "dts-v", "dts-u", ".*", ".*", ".*"],
    ]
