"""Every command the covered pages tell a reader to type, run in the page's order against the real RabbitMQ,
with real workers (the pages: scripts/docs_blocks.py COVERED, listed on docs/development.md).

A page runs in a fresh copy of the checkout (its tracked and not ignored files) in a folder of its own:
the vhost and user its `make broker` or `dts up` makes are named after that folder, so the user's vhost,
.env, .run/ and results/ are never touched. The venv is the one the tests run in: the copy's `.venv`
links to it, with a fresh `.installed` stamp, so `make install` finds it installed. Each command runs in
bash, from the working folder and exported variables the one before left (`. .venv/bin/activate` lasts
for the page), with a user's environment: none of the test session's broker or config settings. The
pages that do not need Docker run as on a machine without a Docker engine (DOCKER_HOST points nowhere),
so `make up` picks local processes; the compose page runs with the engine, on the worker image of this
checkout (DTS_IMAGE, built once and cached by tag). A command must end with the exit code its block
allows (`run: exits`); an output block marked `run: output of CMD` must have the shape of CMD's output.
Afterwards every project folder the page made is brought down (`dts down`, with the broker container and
its volume on the pages with Docker) and its vhost and user deleted, whatever happened.

A page of several hosts (the multi-host page, as root) runs each block on the host its `run: on HOST` marker
names, one bash session per host started in the host's home folder (a folder of the sandbox); every host
but the first is a network namespace of its own with its own host name, on a bridge to this machine, where
the first host's name resolves to this machine. The hosts share the file system: `scp HOST:PATH DEST` is a
copy from that host's home folder (a stand-in on PATH), and `git clone <this repository> DIR && cd DIR` a
copy of the repository the hosts share: the checkout's files with the page's `run: add to test-config.yml`
blocks added to its config.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import ROOT, compose_leftovers, compose_problem, current_image, need_engine
from test_package import forget_project

sys.path.insert(0, str(ROOT / "scripts"))
import docs_blocks
import docs_check

COMMAND_TIMEOUT = 400  # seconds: one command (a compose `up` with the broker's first boot is the longest)
PAGE_TIMEOUT = 900


# --- the pages' commands, run -------------------------------------------------------------------------------


class Shell:
    """bash, one command at a time, each from the state the one before left: its working folder and its
    exported variables."""

    def __init__(self, sandbox: Path, cwd: Path, env: dict[str, str], name: str = "", prefix: tuple[str, ...] = ()):
        self.state = sandbox / f".shell{name}"
        self.state.mkdir()
        self.prefix = prefix  # e.g. `ip netns exec NS`: another host's network
        (self.state / "cwd").write_text(str(cwd))
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", f'export -p > "{self.state}/env.sh"'], env=env, check=True
        )
        self.log: list[tuple[float, str]] = []

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        state = self.state
        script = (
            f'. "{state}/env.sh"\ncd "$(cat "{state}/cwd")" || exit 97\n'
            f'{command}\n__rc=$?\nexport -p > "{state}/env.sh"\npwd > "{state}/cwd"\nexit $__rc\n'
        )
        start = time.monotonic()
        proc = subprocess.Popen(
            [*self.prefix, "bash", "--noprofile", "--norc", "-c", script],
            env={"PATH": "/usr/bin:/bin"},  # the rest comes from env.sh
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            output += f"\n(killed after {timeout:.0f}s)"
        self.log.append((time.monotonic() - start, command))
        return proc.returncode, output


def checkout_copy(to: Path) -> None:
    """The checkout as a clone would have it: its tracked files and the new ones git does not ignore (the
    working tree's content, modification times kept)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, to / name, follow_symlinks=False)


def venv_view(checkout: Path) -> None:
    """The copy's .venv: links to the test session's venv, and a fresh `.installed` stamp (make install: done)."""
    real = Path(sys.prefix)
    view = checkout / ".venv"
    view.mkdir()
    for entry in real.iterdir():
        if entry.name != ".installed":
            (view / entry.name).symlink_to(entry)
    (view / ".installed").touch()


def user_env(sandbox: Path, docker: bool) -> dict[str, str]:
    """A reader's shell: none of the test session's broker, config, run or make settings, the venv not
    active; no Docker engine unless the page needs one."""
    _targets, make_variables = docs_check.makefile()
    drop = {"LOG_FORMAT", "PYTHONPATH", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DTS_", "BROKER_", "COMPOSE_", "PYTEST_")) and k not in drop | make_variables
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin)
    env["CI"] = ""  # a user's terminal: plain lines here as the output is piped
    env["TMPDIR"] = str(sandbox / "tmp")
    if docker:
        env["DTS_IMAGE"] = current_image()  # this checkout's worker image, built once and cached by tag
    else:
        env["DOCKER_HOST"] = f"unix://{sandbox}/no-docker-engine.sock"
    return env


def without_comment(command: str) -> str:
    return " ".join(re.sub(r"(^|\s)#.*$", "", command).split())


def projects(sandbox: Path) -> list[Path]:
    """The folders the page made a project of (a .env beside a config): the copy, any copied beside it, and
    each host's clone (in the host's home folder)."""
    folders = [p for p in sorted(sandbox.iterdir()) if p.is_dir()]
    folders += [p for home in folders for p in sorted(home.iterdir()) if p.is_dir()]
    return [f for f in folders if (f / ".env").is_file() and (f / "test-config.yml").is_file()]


def bring_down(sandbox: Path, env: dict[str, str], docker: bool, shells: dict[str, Shell] | None = None) -> list[str]:
    """Stop every project's workers (and on the pages with Docker its broker container and volume), delete
    its vhost and user; what was left behind, if anything. A host's project is stopped on that host."""
    from dts.config import read_env_file

    left = []
    for folder in projects(sandbox):
        host = (shells or {}).get(folder.parent.name)
        prefix = host.prefix if host else ()
        downs = [["down"]] + ([["down", "--engine", "compose", "--broker", "compose", "--volumes"]] if docker else [])
        for args in downs:
            argv = [*prefix, sys.executable, "-m", "dts", *args]
            subprocess.run(argv, cwd=folder, env=env, capture_output=True, timeout=COMMAND_TIMEOUT)
        values = read_env_file(folder / ".env")
        if docker and values.get("DTS_BROKER_VHOST"):
            found = compose_leftovers(values["DTS_BROKER_VHOST"])
            left += [f"{folder.name}: {kind} {names}" for kind, names in found.items() if names]
        forget_project(folder)
    return left


# --- a page of several hosts -------------------------------------------------------------------------------

NETWORK = "10.214.0"  # the other hosts' bridge: this machine is .1, the first other host .11
BRIDGE = "dtsdocs0"
CLONE = re.compile(r"^git clone <this repository> (?P<dir>[\w.-]+) && cd (?P=dir)$")
SCP = """#!{python}
# scp between the page's hosts: they share this machine's file system, each host's home a folder of {homes}
import pathlib, shutil, sys
*sources, dest = sys.argv[1:]
if not sources or any(a.startswith("-") or ":" not in a for a in sources):
    sys.exit(f"scp (the docs test's): HOST:PATH... DEST only, got {{sys.argv[1:]}}")
for source in sources:
    host, _, path = source.partition(":")
    target = pathlib.Path(dest)
    shutil.copy(pathlib.Path("{homes}", host, path), target / pathlib.Path(path).name if target.is_dir() else target)
"""


def ip(*argv: str, check: bool = True) -> None:
    subprocess.run(["ip", *argv], check=check, capture_output=True, timeout=30)


@contextlib.contextmanager
def network_hosts(names: tuple[str, ...], first: str):
    """Each name a network namespace of its own on a bridge to this machine (as the swarm nodes are made):
    its own address, network and host name; `first` (this machine, the bridge's .1) resolves by name in
    each one. The argv prefix that runs a command on each."""
    namespaces = [f"dtsdocs{n}" for n in range(1, len(names) + 1)]

    def remove() -> None:
        for ns in namespaces:
            ip("netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        ip("link", "del", BRIDGE, check=False)

    remove()  # a run killed before its clean-up
    try:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{NETWORK}.1/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for n, ns in enumerate(namespaces, 1):
            ip("netns", "add", ns)
            ip("link", "add", f"{ns}h", "type", "veth", "peer", "name", f"{ns}n")
            ip("link", "set", f"{ns}n", "netns", ns)
            ip("-n", ns, "link", "set", f"{ns}n", "name", "eth0")
            ip("-n", ns, "addr", "add", f"{NETWORK}.{10 + n}/24", "dev", "eth0")
            for link in ("lo", "eth0"):
                ip("-n", ns, "link", "set", link, "up")
            ip("link", "set", f"{ns}h", "master", BRIDGE, "up")
            ip("-n", ns, "route", "add", "default", "via", f"{NETWORK}.1")
            Path(f"/etc/netns/{ns}").mkdir(parents=True, exist_ok=True)  # `ip netns exec` mounts it on /etc
            Path(f"/etc/netns/{ns}/hosts").write_text(f"127.0.0.1 localhost\n{NETWORK}.1 {first}\n")
        # each command in the host's network and under the host's name (its workers are <pool>@<host>)
        hostname = ("unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"')
        yield {name: ("ip", "netns", "exec", ns, *hostname, name) for name, ns in zip(names, namespaces, strict=True)}
    finally:
        remove()


def clone(shell: Shell, repository: Path, folder: str) -> tuple[int, str]:
    """`git clone <this repository> DIR && cd DIR`: the repository's files copied (as a clone has them),
    the venv linked (`make install` then finds it installed), the cd, and the venv activated, as getting
    started runs `dts` (docs_blocks.ACTIVATE)."""
    target = Path((shell.state / "cwd").read_text().strip()) / folder
    shutil.copytree(repository, target, symlinks=True)
    venv_view(target)
    return shell.run(f"cd {folder} && {docs_blocks.ACTIVATE}")


def add_to_config(config: Path, addition: str) -> None:
    """A ```yaml block's keys into the config: each top-level key's lines right under that key's line (the
    config must have the key: its sub-keys are added, as a reader edits the file)."""
    import yaml

    text = config.read_text()
    for key in yaml.safe_load(addition):
        section = re.search(rf"^{key}:\s*\n", addition, flags=re.M)
        body = addition[section.end() :].split("\n")
        lines = "".join(f"{line}\n" for line in itertools.takewhile(lambda line: line.startswith(" "), body))
        at = re.search(rf"^{key}:\s*\n", text, flags=re.M)
        assert at, f"{config.name} has no `{key}:` to add to"
        text = text[: at.end()] + lines + text[at.end() :]
    config.write_text(text)


@contextlib.contextmanager
def page_shells(covered: docs_blocks.Covered, sandbox: Path, env: dict[str, str]):
    """The shells the page's blocks run in, by host ("" on a page of one host), and the repository its hosts
    clone (None on a page of one host: it runs in a copy of the checkout)."""
    if not covered.hosts:
        checkout = sandbox / "checkout"
        checkout_copy(checkout)
        venv_view(checkout)
        yield {"": Shell(sandbox, checkout, env)}, None
        return
    repository = sandbox / "repository"
    checkout_copy(repository)
    bin_dir = sandbox / "bin"
    bin_dir.mkdir()
    (bin_dir / "scp").write_text(SCP.format(python=sys.executable, homes=sandbox))
    (bin_dir / "scp").chmod(0o755)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    first, *others = covered.hosts
    with network_hosts(tuple(others), first) as prefixes:
        shells = {}
        for n, host in enumerate(covered.hosts):
            (sandbox / host).mkdir()
            shells[host] = Shell(sandbox, sandbox / host, env, name=str(n), prefix=prefixes.get(host, ()))
        yield shells, repository


@pytest.fixture
def sandbox():
    """A short path (supervisord's socket lives under it), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="dts-docs-"))
    (folder / "tmp").mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_page(covered: docs_blocks.Covered, sandbox: Path) -> list[str]:
    """Run the page's blocks in order; the problems found, each `page:line: what`."""
    env = user_env(sandbox, covered.docker)
    with page_shells(covered, sandbox, env) as (shells, repository):
        return run_blocks(covered, sandbox, env, shells, repository)


def run_blocks(covered, sandbox: Path, env: dict[str, str], shells: dict[str, Shell], repository: Path | None):
    outputs: dict[str, str] = {}
    problems: list[str] = []
    try:
        for command in covered.before:
            code, output = shells[""].run(command)
            if code != 0:
                return [f"{covered.page}: `{command}` (what the page needs first) exited {code}:\n{output[-3000:]}"]
        for block in docs_blocks.covered_blocks(covered):
            if block.config_addition and repository is not None:
                add_to_config(repository / "test-config.yml", block.text())
            elif block.runnable and block.skip is None:
                shell = shells.get(block.host or "")
                if shell is None:
                    return [f"{block.where()}: runs on {block.host!r}, not one of the page's hosts {covered.hosts}"]
                for command in block.commands():
                    cloned = CLONE.match(without_comment(command.text))
                    if cloned and repository is not None:
                        code, output = clone(shell, repository, cloned["dir"])
                    else:
                        code, output = shell.run(command.text)
                    outputs[without_comment(command.text)] = output
                    if code not in command.exits:
                        allowed = " or ".join(str(c) for c in sorted(command.exits))
                        problems.append(
                            f"{block.where(command.line)}: `{command.text}` exited {code} (the page allows "
                            f"{allowed}):\n{output[-3000:]}"
                        )
                        return problems  # the page's next steps build on this one
            elif block.output_of is not None:
                output = outputs.get(without_comment(block.output_of))
                if output is None:
                    problems.append(f"{block.where()}: the output of `{block.output_of}`, not run before it")
                    continue
                differs = docs_blocks.shape_problem(block.text(), output)
                if differs:
                    problems.append(
                        f"{block.where()}: the output of `{block.output_of}` has another shape: {differs}\n"
                        f"--- its output:\n{output[-3000:]}"
                    )
    finally:
        left = bring_down(sandbox, env, covered.docker, shells)
        for host, shell in shells.items():
            print(f"{covered.page}{' on ' + host if host else ''}: {sum(t for t, _ in shell.log):.1f}s")
            for seconds, command in shell.log:
                print(f"  {seconds:6.1f}s  {command}")
    if not problems and left:
        problems.append(f"{covered.page}: left behind after `dts down`: {left}")
    return problems


def page_param(covered: docs_blocks.Covered):
    marks = [pytest.mark.integration] + ([pytest.mark.docker] if covered.docker else [])
    return pytest.param(covered, id=covered.page, marks=marks)


@pytest.mark.timeout(PAGE_TIMEOUT)
@pytest.mark.parametrize("covered", [page_param(c) for c in docs_blocks.COVERED])
def test_the_page_commands_run_as_written(covered, rabbitmq, sandbox):
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the tests with the project's venv (make test): the pages' commands use it")
    if covered.docker:
        need_engine(compose_problem())
    if covered.hosts and os.geteuid() != 0:
        need_engine("the page's other hosts are network namespaces: that needs root (sudo make test)")
    problems = run_page(covered, sandbox)
    assert not problems, "\n".join(problems)


# --- the extractor and the checks, without a broker ---------------------------------------------------------


def test_every_covered_page_has_commands_that_run():
    for covered in docs_blocks.COVERED:
        runs = [b for b in docs_blocks.covered_blocks(covered) if b.runnable and b.skip is None]
        assert runs and all(b.commands() for b in runs), covered.page
        for block in docs_blocks.covered_blocks(covered):
            if block.output_of is not None:
                ran = {without_comment(c.text) for b in runs if b.line < block.line for c in b.commands()}
                assert without_comment(block.output_of) in ran, block.where()


def test_a_broken_command_in_getting_started_fails_docs_check(tmp_path):
    page = tmp_path / "getting-started.md"
    text = (ROOT / "docs" / "getting-started.md").read_text()
    planted = text.replace("make up\ndts dispatch\n", "make upp\ndts dispatch --fail-count 1\nmake up ENGIN=local\n")
    assert planted != text
    page.write_text(planted)
    problems = docs_check.command_problems(page)
    assert len(problems) == 3, problems
    assert "`make upp`: the Makefile has no target 'upp'" in problems[0]
    assert "`dts dispatch --fail-count 1`: dts: error: unrecognized arguments: --fail-count 1" in problems[1]
    assert "the Makefile has no variable ENGIN" in problems[2]
    assert not docs_check.command_problems(ROOT / "docs" / "getting-started.md")


def test_output_is_compared_by_shape():
    sample = "$ dts dispatch\nLoaded config: x\n...\nTask  Result  Time\ntask_a  Hello  0.101s  0\nTotal: 0.2s\n"
    same = (
        "set-up line 1\nLoaded config: x\nlive 1\nlive 2\nTask    Result    Time\ntask_a  Hello  9.9s  3\nTotal: 7s\n"
    )
    assert docs_blocks.shape_problem(sample, same) is None
    assert "'Task Result Time'" in docs_blocks.shape_problem(sample, same.replace("Time\n", "Duration\n"))
    assert docs_blocks.shape_problem(sample, same.replace("Total: 7s\n", "")) is not None
    assert docs_blocks.shape_problem(sample, "Loaded config: y\n") is not None


def test_the_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n<!-- run: exits 0, 0|1 -->\n```bash\nmake up   # a comment\n"
        "dts dispatch \\\n  --fail-rate 0.5\n```\n\n<!-- run: skip: on the worker host -->\n```bash\nmake down\n```\n"
    )
    first, second = docs_blocks.blocks(page)
    assert [(c.text, c.line, set(c.exits)) for c in first.commands()] == [
        ("make up   # a comment", 5, {0}),
        ("dts dispatch  --fail-rate 0.5", 6, {0, 1}),
    ]
    assert second.skip == "on the worker host"
    page.write_text("<!-- run: exits 0, 1 -->\n```bash\nmake up\n```\n")
    with pytest.raises(ValueError, match="names 2 codes for 1 commands"):
        docs_blocks.blocks(page)[0].commands()
