"""The config's declaration (dts.config.schema) and test-config.yml agree, key for key.

Every declared key appears in test-config.yml, as a key or a commented-out key (`# delivery_limit: 5`),
and every key the file shows, active or commented out, is declared. The docs' reference page is generated
from the same declaration (dts.config.keys()), so the file, the parser and the docs cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT

from dts.config import keys, parse_settings
from dts.config.schema import Ref, is_scalar

SHIPPED = ROOT / "test-config.yml"
# a comment that is a key: `# delivery_limit: 5`, `#   ca_file: certs/ca.pem` (not prose like `# Pools: ...`)
COMMENTED_KEY = re.compile(r"^(\s*)# ?(\s*[a-z_][a-z0-9_]*:(\s.*)?)$")
DECLARED = {k.name for k in keys()}


def uncommented(text: str) -> str:
    """The file with its commented-out keys made active, at their indentation (`  #   ca_file:` → `    ca_file:`)."""
    lines = (COMMENTED_KEY.sub(r"\1\2", line) for line in text.splitlines())
    return "\n".join(lines) + "\n"


def file_keys(text: str) -> set[str]:
    """Every dotted key of the file, active or commented out; a pool's name is `<name>`, as declared."""
    found: set[str] = set()

    def walk(data: dict, prefix: str) -> None:
        for name, value in data.items():
            dotted = prefix + str(name)
            if dotted not in DECLARED and prefix + "<name>" in DECLARED:
                dotted = prefix + "<name>"
            found.add(dotted)
            if isinstance(value, dict):
                walk(value, dotted + ".")

    walk(yaml.safe_load(uncommented(text)), "")
    return found


def shown_once(found: set[str]) -> set[str]:
    """A key every task takes is shown once, in the commented task of your own (`tasks.<name>.retry`): it
    counts for the built-ins too."""
    shared = {k.removeprefix("tasks.<name>.") for k in found if k.startswith("tasks.<name>.")}
    return found | {f"tasks.{task}.{k}" for task in ("task_a", "task_b") for k in shared}


def test_every_declared_key_is_in_test_config_yml():
    missing = sorted(DECLARED - shown_once(file_keys(SHIPPED.read_text())))
    assert not missing, f"declared in dts/config/schema.py, not in test-config.yml (add it, commented out): {missing}"


def test_every_key_of_test_config_yml_is_declared():
    unknown = sorted(file_keys(SHIPPED.read_text()) - DECLARED)
    assert not unknown, f"in test-config.yml but not declared in dts/config/schema.py: {unknown}"


def test_the_check_sees_a_commented_out_key_go_missing():
    text = SHIPPED.read_text()
    assert "  # delivery_limit:" in text and "broker.delivery_limit" in file_keys(text)
    without = "\n".join(line for line in text.splitlines() if "# delivery_limit:" not in line)
    assert "broker.delivery_limit" in DECLARED - file_keys(without)
    assert "broker.bogus" in file_keys(text.replace("  url: ", "  # bogus: 1\n  url: ")) - DECLARED


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  # delivery_limit: 5         # quorum only", "  delivery_limit: 5         # quorum only"),
        ("  #   ca_file: certs/ca.pem   # (required)", "    ca_file: certs/ca.pem   # (required)"),
        ("  # tls:", "  tls:"),
        ("# Pools: named groups of identical workers", None),
        ("#   CPU-bound tasks: prefork, concurrency = the host's cores", None),
        ("  #                           # the broker is on another host", None),
    ],
)
def test_uncommented_makes_only_commented_keys_active(line, expected):
    assert uncommented(line) == (line if expected is None else expected) + "\n"


def test_every_key_has_help_and_every_number_its_bounds():
    for key in keys():
        assert key.help.strip(), f"{key.name} has no help"
        if key.type in (int, float):
            assert key.min is not None and key.max is not None, f"{key.name} has no bounds"
        if key.choices:
            assert key.default is None or key.default in key.choices, f"{key.name}'s default is not one of its choices"


def _lookup(settings: Any, dotted: str) -> Any:
    value = settings
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value[next(iter(value)) if part == "<name>" else part]  # <name>: the one pool
        else:
            value = getattr(value, part)
    return value


def test_the_walk_gives_the_defaults_the_parser_applies():
    """A file with only a pool (and an empty autoscale range and task retry:) loads each scalar key's declared default."""
    doc = {"pools": {"p": {"queues": ["queue_a", "queue_b"], "autoscale": {}}}, "tasks": {}}
    doc["tasks"] = {task: {"retry": {}} for task in ("task_a", "task_b")}  # a task's own retry: (empty: the section's)
    settings = parse_settings(doc, Path("c.yml"))
    checked = 0
    for key in keys():
        if not is_scalar(key.type) or key.default is dataclasses.MISSING:
            continue
        default = _lookup(settings, str(key.default)) if isinstance(key.default, Ref) else key.default
        assert _lookup(settings, key.name) == default, key.name
        checked += 1
    assert checked >= 30
