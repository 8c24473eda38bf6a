"""The config is read one way: adding a key to any section is one field in dts/config/schema.py.

Each test grafts one more key, `knob`, onto one section of the declaration (a subclass of that section's
class, and of every class above it, so the root declares it) and parses a document with that root: the one
generic reader must read the new key with its default, type, bounds and choices, name it among the known
keys, and keep the section's validate hook (found by class, so a subclass keeps it). A section built by hand
would build its own class and miss the key, so each test fails if any section is special-cased.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from dts.config import keys, parse, schema
from dts.config.schema import Settings, key
from dts.errors import ConfigError

# every section of the declaration, by its dotted name in the walk (the document itself is "")
SECTIONS = [""] + [
    k.name for k in keys() if schema.section_of(k.type) is not None and typing.get_origin(k.type) is not dict
]
KNOBS = {
    "int": (int, dataclasses.field(default=3, metadata=key(min=1, max=5, help="a key added by a test"))),
    "choice": (str, dataclasses.field(default="a", metadata=key(choices=("a", "b"), help="a key added by a test"))),
}


def grafted(cls: type, path: list[str], knob: str) -> type:
    """`cls`, or a subclass whose section at `path` (the walk's names: a mapping's entry is one part)
    declares one more key, `knob`; the classes on the way override one field each, to the new class."""
    if not path:
        kind, spec = KNOBS[knob]
        return dataclasses.make_dataclass(cls.__name__, [("knob", kind, spec)], bases=(cls,), frozen=True, kw_only=True)
    name, *rest = path
    kind = schema.declared(cls, name)[0]
    entries = typing.get_origin(kind) is dict
    sub = grafted(schema.section_of(kind), rest[1:] if entries else rest, knob)
    kind = dict[str, sub] if entries else sub | None if schema.optional(kind)[1] else sub
    old = next(f for f in dataclasses.fields(cls) if f.name == name)
    new = dataclasses.field(default=old.default, metadata=old.metadata)
    return dataclasses.make_dataclass(cls.__name__, [(name, kind, new)], bases=(cls,), frozen=True, kw_only=True)


@pytest.fixture
def document(tmp_path) -> dict[str, Any]:
    """A valid document in which every optional section is present (broker.tls, a pool's autoscale, a task's
    retry)."""
    (tmp_path / "ca.pem").write_text("x")
    return {
        "broker": {"tls": {"ca_file": "ca.pem"}},
        "pools": {"w": {"queues": ["queue_a", "queue_b"], "autoscale": {}}},
        "tasks": {  # a task of your own: tasks.<name>; each task's own retry:
            "w": {"queue": "queue_b", "call": "lab.jobs:run", "retry": {}},
            **{task: {"retry": {}} for task in ("task_a", "task_b")},
        },
    }


def section_path(section: str) -> list[str]:
    return [part.replace("<name>", "w") for part in section.split(".")] if section else []


def put(doc: dict, path: list[str], name: str, value: Any) -> dict:
    mapping = doc
    for part in path:
        mapping = mapping.setdefault(part, {})
    mapping[name] = value
    return doc


def at(settings: Any, path: list[str]) -> Any:
    for part in path:
        settings = settings[part] if isinstance(settings, dict) else getattr(settings, part)
    return settings


def parsed(monkeypatch, tmp_path: Path, root: type, doc: dict) -> Any:
    monkeypatch.setattr(parse, "Settings", root)
    return parse.parse_settings(doc, tmp_path / "c.yml", {})


def error(monkeypatch, tmp_path: Path, root: type, doc: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parsed(monkeypatch, tmp_path, root, doc)
    return str(err.value)


@pytest.mark.parametrize("section", SECTIONS)
def test_a_key_added_to_any_section_is_read_with_its_default_and_bounds(monkeypatch, tmp_path, document, section):
    root, path = grafted(Settings, section.split(".") if section else [], "int"), section_path(section)
    dotted = section + "." if section else ""
    assert dotted + "knob" in {k.name for k in keys(root)}  # the walk (docs, the test-config.yml check) sees it
    assert at(parsed(monkeypatch, tmp_path, root, document), path).knob == 3
    assert at(parsed(monkeypatch, tmp_path, root, put(document, path, "knob", 5)), path).knob == 5
    shown = ".".join([*path, "knob"])
    assert error(monkeypatch, tmp_path, root, put(document, path, "knob", 6)) == (
        f"c.yml: {shown} must be between 1 and 5 (got 6)"
    )
    assert error(monkeypatch, tmp_path, root, put(document, path, "knob", "x")) == (
        f"c.yml: {shown} must be an integer (got 'x')"
    )
    put(document, path, "knob", 4)
    assert "knob" in error(monkeypatch, tmp_path, root, put(document, path, "bogus", 1)).split("(known: ")[1]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_choice_added_to_any_section_is_read_with_its_choices(monkeypatch, tmp_path, document, section):
    root, path = grafted(Settings, section.split(".") if section else [], "choice"), section_path(section)
    assert at(parsed(monkeypatch, tmp_path, root, document), path).knob == "a"
    assert at(parsed(monkeypatch, tmp_path, root, put(document, path, "knob", "b")), path).knob == "b"
    assert error(monkeypatch, tmp_path, root, put(document, path, "knob", "c")) == (
        f"c.yml: {'.'.join([*path, 'knob'])} must be one of a, b (got 'c')"
    )


def test_a_grafted_section_keeps_its_validate_hook(monkeypatch, tmp_path, document):
    root = grafted(Settings, ["pools", "<name>", "autoscale"], "int")
    document["pools"]["w"]["autoscale"] = {"min": 3, "max": 2}
    assert error(monkeypatch, tmp_path, root, document) == (
        "c.yml: pools.w.autoscale.min must be <= pools.w.autoscale.max (2) (got 3)"
    )


def test_every_hook_is_a_declared_section():
    sections = {Settings} | {schema.section_of(k.type) for k in keys()} - {None}
    assert set(parse.VALIDATE) <= sections
    assert {c.__name__ for c in parse.VALIDATE} == {
        "Settings",
        "BrokerSettings",
        "BrokerTLS",
        "TaskSettings",
        "PoolSettings",
        "PoolAutoscale",
        "AutoscaleSettings",
    }
