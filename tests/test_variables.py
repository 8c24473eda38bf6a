"""Every environment variable the project reads is declared in dts.config.variables (which writes the docs'
reference page), and every declared one is read somewhere: the modules, the scripts, the Makefile, the
compose file and the Dockerfile are searched for reads."""

from __future__ import annotations

import re

from helpers import ROOT

from dts.config.variables import names

# Python: environ.get("X"), environ["X"], "X" in environ, getenv("X"); shell and compose: ${X:-...}, ${X-...}
PY_READ = re.compile(
    r"""environ(?:\.get)?\(\s*"([A-Z][A-Z0-9_]+)"|environ\[\s*"([A-Z][A-Z0-9_]+)"\s*\]|"""
    r""""([A-Z][A-Z0-9_]+)"\s+in\s+[\w.]*environ|getenv\(\s*"([A-Z][A-Z0-9_]+)\""""
)
SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]+):?[-?=]")
# other programs' own variables, passed through or set for them, not the project's
NOT_OURS = {
    "COLUMNS",
    "COMPOSE_DOCKER_CLI_BUILD",  # docker-compose v1's: the classic builder
    "COMPOSE_PROFILES",
    "DOCKER_BUILDKIT",  # docker's
    "FLOWER_BASIC_AUTH",  # Flower's, set by dts.flower
    "HOME",
    "PATH",
    "PY",  # a Makefile variable handed to the scripts
    "RABBITMQ_DEFAULT_PASS",  # the broker image's, set from DTS_BROKER_*
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_VHOST",
    "XDG_CACHE_HOME",
}


def product_files():
    yield from ROOT.glob("*.py")
    yield from (ROOT / "dts").rglob("*.py")
    for name in ("Makefile", "Dockerfile", "docker-compose.yml", "docker/base_image.sh"):
        yield ROOT / name
    yield from (ROOT / "scripts").glob("*.sh")
    yield from (ROOT / "docker").rglob("*")


def reads() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in product_files():
        if not path.is_file() or path.name == "variables.py":
            continue
        text = path.read_text()
        pattern = PY_READ if path.suffix == ".py" else SHELL_READ
        for match in pattern.finditer(text):
            name = next(g for g in match.groups() if g)
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_variable_read_is_declared():
    undeclared = {n: sorted(p) for n, p in reads().items() if n not in names() and n not in NOT_OURS}
    assert not undeclared, f"declare these in dts/config/variables.py (and run make docs-ref): {undeclared}"


def test_every_declared_variable_is_used():
    text = "\n".join(p.read_text() for p in product_files() if p.is_file() and p.name != "variables.py")
    unused = [n for n in names() if not re.search(rf"\b{n}\b", text)]
    assert not unused


def test_the_check_finds_a_read_it_does_not_know(tmp_path):
    code = 'os.environ.get("DTS_NEW_THING")\nenviron["OTHER_ONE"]\n"THIRD" in os.environ\n'
    found = {next(g for g in m.groups() if g) for m in PY_READ.finditer(code)}
    assert found == {"DTS_NEW_THING", "OTHER_ONE", "THIRD"}
    assert SHELL_READ.findall('X="${DTS_WAIT:-90}" ${OTHER-1}') == ["DTS_WAIT", "OTHER"]
