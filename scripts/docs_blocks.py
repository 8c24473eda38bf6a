"""The commands the docs tell a reader to type, read from the pages: what `tests/test_docs_commands.py` runs
and `make docs-check` parses (scripts/docs_check.py).

A page's fenced blocks, by their language:
- ```bash (or sh, shell): commands to type, one a line (a trailing `\\` continues it); `#` starts a comment;
- ```text, ```yaml, ... and a bare ```: not run. `$ ` lines in an output block name the command that
  printed it; they are part of the sample.

An HTML comment on the lines right above a block's fence (above a `<!-- generated: ... -->` line, if any)
tells the runner more:
- `<!-- run: skip: REASON -->`: not run (another host, a cluster, a command that runs until Ctrl-C, the
  test suite itself). The page says in plain words where or when it runs;
- `<!-- run: exits 0, 0|1, 1 -->`: the exit codes its commands may end with, one entry per command in order
  (or one entry for all); without it, every command must exit 0;
- `<!-- run: output of `CMD` -->` above an output block: the output of CMD, which the page runs before the
  block, has the block's shape (`shape_problem`);
- `<!-- run: on HOST -->` on a page of several hosts (`Covered.hosts`): the host whose shell runs the block;
- `<!-- run: add to test-config.yml -->` above a ```yaml block: its keys go into the test-config.yml of the
  repository the page's hosts clone (`git clone <this repository> DIR`), as a reader's commit would.

COVERED lists the pages the command test runs, in the order a reader meets them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = ("bash", "sh", "shell")
SNIPPETS = ROOT / "docs"  # mkdocs.yml: pymdownx.snippets base_path
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
ACTIVATE = ". .venv/bin/activate"  # getting started: how every other page's `dts ...` is run


@dataclass(frozen=True)
class Covered:
    """A page the command test runs: `section` (a heading's text) limits it to that section; `before` is
    what the page says must have been done first (getting started's steps), run before its blocks;
    `docker`: its blocks need a Docker engine (the others run as on a machine without one); `hosts`: the
    hosts a page of several hosts names in its `run: on HOST` markers, the first one this machine, each
    other one a network namespace of its own."""

    page: str
    section: str | None = None
    before: tuple[str, ...] = (ACTIVATE,)
    docker: bool = False
    hosts: tuple[str, ...] = ()


COVERED = (
    Covered("README.md", section="Quickstart", before=()),
    Covered("docs/getting-started.md", before=()),
    Covered("docs/guides/dispatch.md", before=(ACTIVATE, "make up")),
    Covered("SCALING.md", section="Commands", before=(ACTIVATE, "make up")),
    Covered("docs/guides/own-tasks.md"),
    Covered("docs/deploy/local.md"),
    Covered("docs/deploy/compose.md", docker=True),
    Covered("docs/deploy/multi-host.md", before=(), docker=True, hosts=("rabbit.example.org", "worker-1")),
)


@dataclass(frozen=True)
class Command:
    text: str  # as typed, continuation lines joined, comment kept
    line: int  # of the page
    exits: frozenset[int] = frozenset({0})


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence
    lang: str
    body: list[str]
    markers: list[str] = field(default_factory=list)
    headings: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE

    def marker(self, name: str) -> str | None:
        """The text after `run: NAME` in this block's markers, or None."""
        for body in self.markers:
            found = re.match(rf"run:\s*{name}\b:?\s*(.*)$", body, flags=re.S)
            if found:
                return found.group(1).strip()
        return None

    @property
    def skip(self) -> str | None:
        return self.marker("skip")

    @property
    def host(self) -> str | None:
        return self.marker("on")

    @property
    def config_addition(self) -> bool:
        return self.marker("add to test-config.yml") is not None

    @property
    def output_of(self) -> str | None:
        found = self.marker("output of")
        return found.strip("`") if found is not None else None

    def where(self, line: int | None = None) -> str:
        return f"{shown(self.page)}:{self.line if line is None else line}"

    def lines(self) -> list[tuple[int, str]]:
        """(line of the page, line) of the body, a `--8<-- "FILE"` line replaced by that file's lines
        (docs/FILE), as the site shows it; each of them on the `--8<--` line."""
        lines = []
        for number, line in enumerate(self.body, self.line + 1):
            snippet = SNIPPET.match(line)
            included = (SNIPPETS / snippet["path"]).read_text().splitlines() if snippet else [line]
            lines += [(number, each) for each in included]
        return lines

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines())

    def commands(self) -> list[Command]:
        """The block's commands: blank and comment-only lines dropped, `\\` continuations joined; each with
        the exit codes the block's `run: exits` marker allows it."""
        found: list[tuple[str, int]] = []
        pending, start = "", 0
        for offset, line in self.lines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not pending:
                start = offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append((pending + line.strip(), start))
            pending = ""
        if pending:
            found.append((pending.strip(), start))
        codes = self.exit_codes(len(found))
        return [Command(text, line, exits) for (text, line), exits in zip(found, codes, strict=True)]

    def exit_codes(self, count: int) -> list[frozenset[int]]:
        marker = self.marker("exits")
        if marker is None:
            return [frozenset({0})] * count
        entries = [frozenset(int(code) for code in entry.split("|")) for entry in marker.split(",")]
        if len(entries) == 1:
            return entries * count
        if len(entries) != count:
            raise ValueError(f"{self.where()}: `run: exits` names {len(entries)} codes for {count} commands")
        return entries


def shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks(page: Path) -> list[Block]:
    """Every fenced block of the page, with the markers above it and the headings it is under."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    headings: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        heading = HEADING.match(lines[i])
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2).strip("`"))]
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = i + 1
        while end < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[end]):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
        markers, above = [], i - 1
        while above >= 0 and MARKER.match(lines[above]):
            markers.insert(0, MARKER.match(lines[above])["body"])
            above -= 1
        found.append(Block(page, i + 1, opening["lang"], body, markers, tuple(h[1] for h in headings)))
        i = end + 1
    return found


def covered_blocks(covered: Covered) -> list[Block]:
    """The page's blocks the command test reads (those of its section, if it names one)."""
    return [
        block for block in blocks(ROOT / covered.page) if covered.section is None or covered.section in block.headings
    ]


def simple_commands(text: str) -> Iterator[list[str]]:
    """The simple commands of a shell line as argv lists (split at `|`, `&&`, `||`, `;` and `$(`/`)`),
    leading VAR=value assignments dropped; a line the shell could not split yields nothing."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return
    argv: list[str] = []
    for token in [*tokens, ";"]:
        if (token and set(token) <= set(";&|()")) or token == "$":
            while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                argv.pop(0)
            if argv and argv[-1] == "$":
                argv.pop()
            if argv:
                yield argv
            argv = []
        else:
            argv.append(token[:-1] if token.endswith("$") and token != "$" else token)


# --- output by shape ---------------------------------------------------------------------------------------

GAP = "..."
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def shape(line: str) -> str:
    """A line's shape: its words up to the first that holds a digit (a number, a time, an id, a host's
    name); the whole line, whitespace collapsed, when none does."""
    words = []
    for word in ANSI.sub("", line).split():
        if re.search(r"\d", word):
            break
        words.append(word)
    return " ".join(words)


def shape_problem(sample: str, output: str) -> str | None:
    """None when the output has the sample's shape, else what differs. The sample's lines (without its `$ `
    lines and blank lines) must be consecutive lines of the output with the same shape; `...` in the sample
    stands for any number of lines; the output may have more lines before and after."""
    segments: list[list[str]] = [[]]
    for line in sample.splitlines():
        if line.startswith("$ ") or not line.strip():
            continue
        if line.strip() == GAP:
            segments.append([])
        else:
            segments[-1].append(line)
    actual = [line for line in output.splitlines() if line.strip()]
    shapes = [shape(line) for line in actual]
    at = 0
    for segment in (s for s in segments if s):
        want = [shape(line) for line in segment]
        start = next(
            (i for i in range(at, len(shapes) - len(want) + 1) if shapes[i : i + len(want)] == want),
            None,
        )
        if start is None:
            return _closest(segment, want, actual, shapes, at)
        at = start + len(want)
    return None


def _closest(segment: list[str], want: list[str], actual: list[str], shapes: list[str], at: int) -> str:
    best, best_len = at, -1
    for i in range(at, len(shapes)):
        n = 0
        while n < len(want) and i + n < len(shapes) and shapes[i + n] == want[n]:
            n += 1
        if n > best_len:
            best, best_len = i, n
    if best_len <= 0:
        return f"no output line has the shape of the sample's {segment[0]!r} ({want[0]!r})"
    got = actual[best + best_len] if best + best_len < len(actual) else "(the end of the output)"
    return (
        f"after {best_len} matching line(s), the sample has {segment[best_len]!r} (shape "
        f"{want[best_len]!r}) where the output has {got!r}"
    )
