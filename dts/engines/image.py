"""The images the container engines run, built locally from what the installed package carries (no
registry needed): the worker image from the package itself, the broker image from its recipe.

    worker_image(project)        # 'dts-1a2b3c4d-worker:0.9.0-3f2a1b4c5d': $DTS_IMAGE, else per project
    build_worker_image(project)  # docker build of that tag, unless it exists
    build_broker_image("4.3")    # 'dts-broker:4.3-<recipe hash>' ($DTS_BROKER_IMAGE) from the broker recipe

The worker image's build context is made in the project's run folder: the package's Dockerfile and pinned
requirements.txt, and the package's own files (dts/), so the image runs the same `dts` as the host. Its tag
names the project, the version and a hash of that context: a changed package is a new tag, never `latest`. The
broker image's tag names the RabbitMQ line and a hash of the recipe's files (docker/broker/): a changed
recipe is a new tag, and nothing is bumped by hand (scripts/build-broker-image.sh asks this module for it).
The base is $BASE_IMAGE, else python:3.12-slim, else (no registry answers) a Debian base made here with
debootstrap (the package's base_image.sh, cached; needs root).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dts
from dts.config import project_name, run_dir
from dts.errors import CliError, ExitCode
from dts.files import DATA_DIR

log = logging.getLogger("dts.image")
PACKAGE_DIR = Path(dts.__file__).resolve().parent
WORKER_BASE = "python:3.12-slim"
LOCAL_BASE = "dts-base:{suite}"  # made by base_image.sh --suite SUITE where no registry answers
BROKER_RECIPE = DATA_DIR / "broker"  # docker/broker/ in a checkout: Dockerfile, entrypoint, configuration
# The compose broker's RabbitMQ lines (--rabbitmq, RABBITMQ=): line -> the Debian suite whose rabbitmq-server
# package is that line. Each line's image is tagged 'dts-broker:<line>-<recipe hash>' (broker_tag).
RABBITMQ_SUITES = {
    "3.10": "bookworm",  # Debian 12
    "4.0": "trixie",  # Debian 13
    "4.3": "sid",  # Debian unstable: 4.3's strict defaults
}


def recipe_hash(folder: Path = BROKER_RECIPE) -> str:
    """10 hex digits over the broker recipe's file names and contents (links followed)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def broker_tag(line: str, recipe: str | None = None) -> str:
    """The broker image's tag of a RabbitMQ line: 'dts-broker:<line>-<recipe hash>' (pure given `recipe`)."""
    return f"dts-broker:{line}-{recipe or recipe_hash()}"


# line -> (image tag, Debian suite): what --rabbitmq offers, in its order
RABBITMQ_LINES = {line: (broker_tag(line, recipe_hash()), suite) for line, suite in RABBITMQ_SUITES.items()}
DEFAULT_RABBITMQ = "3.10"
BROKER_IMAGE = RABBITMQ_LINES[DEFAULT_RABBITMQ][0]
BUILD_TIMEOUT = 1800  # seconds for one docker build (pip or apt inside it)


def package_files() -> dict[str, Path]:
    """The worker image's context: {path in the context: file}: the Dockerfile, the pinned requirements and
    every file of the package (its data included, symlinks followed), without byte-code."""
    found = {"Dockerfile": DATA_DIR / "Dockerfile", "requirements.txt": DATA_DIR / "requirements.txt"}
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found[str(Path("dts", path.relative_to(PACKAGE_DIR)))] = path
    return found


def _files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def context(project: Path, code: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The worker image's build context, {path in it: content}: the package's files, and the project's
    `code:` folders under app/ with a Dockerfile that copies them to /app, puts them on the import path and
    installs a folder's requirements.txt."""
    files = {name: path.read_bytes() for name, path in package_files().items()}
    if code:
        for folder in code:
            for path in _files_of(project / folder):
                files[str(Path("app", folder, path.relative_to(project / folder)))] = path.read_bytes()
        paths = ":".join(["/opt/dts", *(f"/app/{Path(folder).as_posix()}" for folder in code)])
        files["Dockerfile"] += (
            f"\n# the project's code: folders (dts.engines.image)\nCOPY app/ /app/\nENV PYTHONPATH={paths}\n".encode()
        )
        files["Dockerfile"] += requirements_step(project, code).encode()
    return files


def requirements_step(project: Path, code: tuple[str, ...]) -> str:
    """The Dockerfile lines that install each code: folder's requirements.txt (what your own tasks import or
    run: pin them) into the image's environment, as root, then back to the unprivileged user; "" if none."""
    found = [
        f"/app/{Path(folder).as_posix()}/requirements.txt"
        for folder in code
        if (project / folder / "requirements.txt").is_file()
    ]
    if not found:
        return ""
    installs = " ".join(f"-r {path}" for path in found)
    return f"USER root\nRUN /opt/venv/bin/pip install {installs}\nUSER 10001:10001\n"


def context_hash(files: dict[str, bytes], base: str) -> str:
    """12 hex digits over the context's paths and contents and the base image's name (pure)."""
    digest = hashlib.sha256(base.encode())
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


def worker_image(project: Path, environ: dict[str, str] | None = None, code: tuple[str, ...] = ()) -> str:
    """$DTS_IMAGE, else '<project name>-worker:<version>-<context hash>' (the hash follows the package and
    the project's code: folders)."""
    environ = os.environ if environ is None else environ
    if environ.get("DTS_IMAGE"):
        return environ["DTS_IMAGE"]
    base = environ.get("BASE_IMAGE") or WORKER_BASE
    return f"{project_name(project)}-worker:{dts.__version__}-{context_hash(context(project, code), base)}"


def docker(*args: str, timeout: float = 60, quiet: bool = True) -> bool:
    """True when `docker ARGS` exits 0 (output discarded when quiet)."""
    out = subprocess.DEVNULL if quiet else None
    try:
        return subprocess.run(["docker", *args], stdout=out, stderr=out, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def base_image(default: str, suite: str = "bookworm") -> str:
    """$BASE_IMAGE, else `default` when present or pullable, else the local Debian base of that suite (made
    once)."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    if docker("image", "inspect", default) or docker("pull", "-q", default, timeout=120):
        return default
    local = LOCAL_BASE.format(suite=suite)
    log.warning("cannot pull %s (no registry reachable?): making a local Debian base, %s", default, local)
    argv = ["bash", str(DATA_DIR / "base_image.sh"), "--suite", suite, local]
    if subprocess.run(argv, timeout=BUILD_TIMEOUT).returncode != 0:
        raise CliError(f"cannot make the local base image {local}: set BASE_IMAGE to an image this engine has")
    return local


def docker_build(tag: str, base: str, context: Path) -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")}  # the legacy builder: no buildx
    argv = ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(context)]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CliError(f"building {tag} took more than {BUILD_TIMEOUT}s") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise CliError(f"`docker build` of {tag} failed: {last[0]}")


def build_worker_image(project: Path, code: tuple[str, ...] = (), rebuild: bool = False) -> str:
    """Build the project's worker image unless its tag exists; returns the tag."""
    tag = worker_image(project, code=code)
    if not rebuild and docker("image", "inspect", tag):
        log.info("worker image %s: present", tag)
        return tag
    folder = run_dir(project) / "image"
    shutil.rmtree(folder, ignore_errors=True)
    for name, data in context(project, code).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    base = base_image(WORKER_BASE)
    print(f"building the worker image {tag} on {base}", flush=True)
    docker_build(tag, base, folder)
    return tag


def rabbitmq_line(line: str) -> tuple[str, str]:
    """(image tag, Debian suite) of a RabbitMQ line; an unknown line is a one-line exit 2."""
    if line not in RABBITMQ_LINES:
        raise CliError(
            f"RabbitMQ line {line!r} has no broker image: choose from {', '.join(RABBITMQ_LINES)}", ExitCode.USAGE
        )
    return RABBITMQ_LINES[line]


def broker_image(line: str = DEFAULT_RABBITMQ, environ: dict[str, str] | None = None) -> str:
    """The compose broker's image for a RabbitMQ line: $DTS_BROKER_IMAGE when set, else the line's tag."""
    environ = os.environ if environ is None else environ
    return environ.get("DTS_BROKER_IMAGE") or rabbitmq_line(line)[0]


def build_broker_image(line: str = DEFAULT_RABBITMQ) -> str:
    """The compose broker's image of a RabbitMQ line: $DTS_BROKER_IMAGE when it names another image (compose
    pulls it), else the line's tag (dts-broker:3.10-<recipe hash>), built once from the package's recipe on
    a Debian base of the line's suite. Returns the tag."""
    tag, suite = broker_image(line), rabbitmq_line(line)[1]
    cached = docker("image", "inspect", tag) and not os.environ.get("DTS_BROKER_REBUILD")
    if not tag.startswith("dts-broker:") or cached:
        return tag
    base = base_image(f"debian:{suite}-slim", suite)
    print(f"building the broker image {tag} on {base} (apt-get install rabbitmq-server; about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix="dts-broker-") as context:  # the recipe's files, not links to them
        for path in (DATA_DIR / "broker").iterdir():
            shutil.copyfile(path, Path(context, path.name))
        docker_build(tag, base, Path(context))
    return tag


def main(argv: list[str]) -> int:
    """`python -m dts.engines.image broker LINE`: prints the line's tag and Debian suite (for
    scripts/build-broker-image.sh); an unknown line is one line on stderr and exit 2."""
    if len(argv) != 2 or argv[0] != "broker":
        print("usage: python -m dts.engines.image broker 3.10|4.0|4.3", file=sys.stderr)
        return ExitCode.USAGE
    try:
        print(*rabbitmq_line(argv[1]))
    except CliError as err:
        print(err, file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
