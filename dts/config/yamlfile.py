"""Bounded input: a file read that cannot block or fill memory, and a YAML loader that refuses expansion.

    text = read_bounded(path, MAX_CONFIG_BYTES, "config", "pass --config PATH or set DTS_CONFIG")
    data = parse_yaml(text, path)                   # safe types only; ConfigError naming the line otherwise

Input is bounded before it is trusted (docs/reference/input-bounds.md): a config file is at most MAX_CONFIG_BYTES
(checked with stat, then read with a bounded read); its YAML may not use anchors or aliases (`&x`, `*x`:
no billion-laughs expansion), nor hold more than MAX_YAML_NODES nodes or nest deeper than MAX_YAML_DEPTH; a
mapping may not hold a key twice.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode
from yaml.resolver import Resolver

from dts.errors import ConfigError

# Input bounds (docs/reference/input-bounds.md): what a config file and its YAML may be at most.
MAX_CONFIG_BYTES = 1024 * 1024  # the shipped file is ~11 KB
MAX_YAML_NODES = 10_000  # scalars + mappings + sequences (the shipped file has ~100)
MAX_YAML_DEPTH = 20  # nesting levels (the shipped file has 5)
MAX_INT_DIGITS = 30  # a longer integer is a typo, and int() of a huge one is slow


class _BoundedComposer(Composer):
    """PyYAML's composer, refusing what makes a small file expensive: any anchor or alias (a few hundred
    bytes of nested aliases expand into gigabytes), more than MAX_YAML_NODES nodes, nesting deeper than
    MAX_YAML_DEPTH (the recursion would overflow the stack). It reads events one by one, so it stops at
    the first offending one: refusal costs what the file's start costs, never the whole expansion."""

    def __init__(self) -> None:
        Composer.__init__(self)
        self.nodes = self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            raise ComposerError(
                None,
                None,
                "YAML anchors and aliases (&name, *name) are not supported: write the value out in full",
                event.start_mark,
            )
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise ComposerError(
                None, None, f"more than {MAX_YAML_NODES} YAML values: this is not a config file", event.start_mark
            )
        if isinstance(event, CollectionStartEvent) and self.depth >= MAX_YAML_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


class _BoundedConstructor(SafeConstructor):
    def construct_mapping(self, node, deep=False):
        """A mapping, refusing a key written twice (PyYAML keeps the last one silently: `replicas:` twice in
        a pool would quietly win or lose)."""
        if isinstance(node, MappingNode):
            first_at: dict[Any, int] = {}  # key -> the line it was first written on
            for key_node, _ in node.value:
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    first = first_at.get(key)
                except TypeError:  # an unhashable key: SafeConstructor refuses it below
                    continue
                if first is not None:
                    lines = f"line {line}" if first == line else f"lines {first} and {line}"
                    raise ConstructorError(
                        None, None, f"key {key!r} written twice ({lines}): keep one", key_node.start_mark
                    )
                first_at[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node):
        if len(node.value) > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark)
        return self.construct_yaml_int(node)


_BoundedConstructor.add_constructor("tag:yaml.org,2002:int", _BoundedConstructor.construct_bounded_int)

if yaml.__with_libyaml__:  # libyaml scans and parses (fast, in C); the bounded composer builds the nodes
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, CParser, _BoundedConstructor, Resolver):
        def __init__(self, stream):
            CParser.__init__(self, stream)
            _BoundedConstructor.__init__(self)
            Resolver.__init__(self)
            _BoundedComposer.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml: the pure-Python scanner and parser
    from yaml.parser import Parser as _Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, _Parser, _BoundedComposer, _BoundedConstructor, Resolver):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _Parser.__init__(self)
            _BoundedComposer.__init__(self)
            _BoundedConstructor.__init__(self)
            Resolver.__init__(self)


def parse_yaml(text: str, path: Path) -> Any:
    """One YAML document, within the bounds above (safe types only); ConfigError naming the line otherwise."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        problem = f"{context}, {problem}" if context and mark else problem
        problem = problem if len(problem) <= 120 else problem[:117] + "..."
        kind = "refused" if isinstance(exc, (ComposerError, ConstructorError)) else "syntax error"
        raise ConfigError(f"{path.name}: YAML {kind}{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # a value the safe constructors reject (defence in depth)
        raise ConfigError(f"{path.name}: YAML value not supported ({type(exc).__name__}: {str(exc)[:80]})") from None
    finally:
        loader.dispose()


def shown_path(path: Path) -> str:
    """A path for an error message, cut to about 100 characters (its start and its end)."""
    text = str(path)
    return text if len(text) <= 100 else text[:40] + "..." + text[-57:]


def read_bounded(path: Path, limit: int, what: str, hint: str) -> str:
    """A file's text, read only if it is a regular file of at most `limit` bytes of UTF-8 (checked with stat
    first, then a bounded read: a FIFO, /dev/zero or a growing file cannot make this block or fill memory).
    Every problem is one ConfigError naming the file, `what` it should be and `hint` (the fix)."""
    shown = shown_path(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{shown} is a directory, not a {what}; {hint}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{shown} is not a regular file: cannot read {what}; {hint}")
        if info.st_size > limit:
            raise ConfigError(f"{shown} is {info.st_size} bytes: a {what} has at most {limit}; {hint}")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read {what} ({exc.strerror or exc}); {hint}") from None
    if len(data) > limit:
        raise ConfigError(f"{shown} is over {limit} bytes: a {what} has at most {limit}; {hint}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
