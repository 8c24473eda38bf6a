"""`make docs-check`: the docs are the code's and read as guides, not as a lab notebook.

    python scripts/docs_check.py          # exit 0, or 1 with one line per problem: page:line: what, and the fix

Checks, in order:
- the generated reference (CLI, config keys, environment, exit codes, make targets, README's blocks, the
  tables drawn from result files) matches the code: scripts/docs_reference.py --check;
- the guides (README.md, SCALING.md and docs/, not the generated reference, the samples or the changelog)
  carry no workshop notes in their prose: a date, a commit reference, "these machines", "previous commit",
  `git worktree`, "could not be run here", a path of the machine they were written on, this machine's host
  name. Pasted output in code blocks is exempt (it is real output); history goes to CHANGELOG.md, a run's
  method to the performance page;
- every command of a shell block on a guide (scripts/docs_blocks.py) that is `dts ...`, `python dispatch.py`,
  `python scale.py`, `python load_test.py` or `make ...` parses: a sub-command and its options against the
  real argparse parsers, a make target and each VAR=value against the Makefile (an ENGINE= value against
  the engines). Broker-free and fast: `tests/test_docs_commands.py` runs the covered pages' commands for
  real; the covered pages are listed on docs/development.md;
- every line of every fenced block of every page (README.md, SCALING.md, docs/ with the generated
  reference, a sample a page includes with `--8<--` as the site shows it) fits the site's content
  column: at most 88 characters (dts.reports.console.WIDTH, the width the reports are laid out for). A
  command's comment goes under the block, a generated block or sample is fixed in the code that draws
  it, pasted output is wrapped or cut (`…`, said in the text);
- every sample that a program printed (docs/samples/*.txt) was made by its renderer's current code: the
  hash of each renderer's source (scripts/docs_samples.py RENDERERS) matches the one `make docs-samples`
  stored in docs/samples/renderers.json.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import socket
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import docs_blocks  # scripts/: this script's own folder, first on sys.path
import docs_samples

ROOT = Path(__file__).resolve().parent.parent
WORKSHOP = {
    r"\b20\d\d-\d\d-\d\d\b": "a date",
    r"\b(?:commit|checkout|at) `?[0-9a-f]{7,40}\b": "a commit reference",
    r"\bthese machines\b": "'these machines'",
    r"\bprevious (?:commit|checkout)\b": "a previous commit",
    r"\bgit worktree\b": "`git worktree`",
    r"\b(?:could|was|were) not (?:be )?run here\b|\bnot run here\b": "what was not run here",
    r"(?<![\w.])/(?:work|home|root|tmp/fresh)/\S+": "a path on the machine the docs were written on",
}
FIX = "say how, for a user; history goes to CHANGELOG.md, a run's method to docs/performance.md"


def all_pages(root: Path = ROOT) -> Iterator[Path]:
    """Every page: README, SCALING.md and every page of docs/ (the generated reference too)."""
    yield root / "README.md"
    yield root / "SCALING.md"
    yield from sorted((root / "docs").rglob("*.md"))


def guide_pages(root: Path = ROOT) -> Iterator[Path]:
    """The pages a user reads as guides: README, SCALING.md and docs/ (not the generated reference, the
    samples or the changelog)."""
    yield root / "README.md"
    yield root / "SCALING.md"
    for page in sorted((root / "docs").rglob("*.md")):
        if page.parent.name not in ("reference", "samples") and page.name != "changelog.md":
            yield page


def prose_lines(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of the page outside its fenced code blocks (scripts/docs_blocks.py finds them)."""
    fenced = {n for b in docs_blocks.blocks(page) for n in range(b.line, b.line + len(b.body) + 2)}
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if number not in fenced:
            yield number, line


def workshop_notes(page: Path, host: str | None = None) -> list[str]:
    """One line per workshop note in the page's prose: `page:line: what (found); fix`."""
    rules = dict(WORKSHOP)
    host = socket.gethostname() if host is None else host
    if host and host != "localhost":
        rules[rf"@{re.escape(host)}\b|\b{re.escape(host)}-\d+\b"] = "this machine's host name"
    shown = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    found = []
    for number, line in prose_lines(page):
        for pattern, what in rules.items():
            for match in re.finditer(pattern, line, flags=re.I):
                found.append(f"{shown}:{number}: {what} ({match.group(0)!r}); {FIX}")
    return found


SCRIPTS = {"dispatch.py": "dts.cli.dispatch", "scale.py": "dts.cli.pools", "load_test.py": "dts.cli.load_test"}
PYTHONS = ("python", "python3", ".venv/bin/python")
DEVELOPMENT = ROOT / "docs" / "development.md"


@cache
def dts_parser():
    from dts.cli.main import build_parser

    return build_parser()


@cache
def script_parser(script: str):
    from importlib import import_module

    return import_module(SCRIPTS[script]).build_parser(script)


@cache
def makefile() -> tuple[frozenset[str], frozenset[str]]:
    """(the Makefile's targets, its variables)."""
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M))
    for phony in re.findall(r"^\.PHONY:(.*)$", text, flags=re.M):
        targets |= set(phony.split())
    variables = set(re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*[?:+]?=", text, flags=re.M))
    return frozenset(targets), frozenset(variables)


def engine_names() -> set[str]:
    from dts.engines.registry import ENGINES

    return {"auto", *ENGINES}


def parse_error(parser, args: list[str]) -> str | None:
    """argparse's complaint about `args`, or None when they parse (--help and --version print nothing here)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return None


def make_error(args: list[str]) -> str | None:
    targets, variables = makefile()
    for arg in args:
        if arg.startswith("-"):
            continue
        name, eq, value = arg.partition("=")
        if eq:
            if name not in variables:
                return f"the Makefile has no variable {name} (make {arg})"
            if name == "ENGINE" and value and value not in engine_names():
                return f"ENGINE={value} is no engine (engines: {', '.join(sorted(engine_names()))})"
        elif arg not in targets:
            return f"the Makefile has no target {arg!r} (make help lists them)"
    return None


def command_error(argv: list[str]) -> str | None:
    """Why the command would be refused before it runs (an unknown sub-command, option or make target), or
    None; commands other than dts, the scripts and make are not checked."""
    if argv[0] == "dts":
        return parse_error(dts_parser(), argv[1:])
    if argv[0] in PYTHONS and len(argv) > 1 and argv[1] in SCRIPTS:
        return parse_error(script_parser(argv[1]), argv[2:])
    if argv[0] == "make":
        return make_error(argv[1:])
    return None


def command_problems(page: Path) -> list[str]:
    """One line per command of the page's shell blocks that would not parse: `page:line: what`."""
    found = []
    for block in docs_blocks.blocks(page):
        if not block.runnable:
            continue
        for command in block.commands():
            for argv in docs_blocks.simple_commands(command.text):
                error = command_error(argv)
                if error:
                    found.append(f"{block.where(command.line)}: `{shlex.join(argv)}`: {error}")
    return found


def coverage_problems() -> list[str]:
    """The pages the command test runs are each named on the development page."""
    text = DEVELOPMENT.read_text()
    return [
        f"docs/development.md: does not list {c.page}, a page tests/test_docs_commands.py runs"
        for c in docs_blocks.COVERED
        if f"`{c.page}`" not in text
    ]


def block_lines(block: docs_blocks.Block) -> Iterator[tuple[str, str, bool]]:
    """(where, line, from a sample) for each line of a fenced block as the site shows it: a `--8<-- "FILE"`
    line replaced by that file's lines, each found at its own line and the page's."""
    for number, line in enumerate(block.body, block.line + 1):
        snippet = docs_blocks.SNIPPET.match(line)
        if not snippet:
            yield block.where(number), line, False
            continue
        path = docs_blocks.SNIPPETS / snippet["path"]
        for n, included in enumerate(path.read_text().splitlines(), 1):
            yield f"{docs_blocks.shown(path)}:{n} (included at {block.where(number)})", included, True


def wide_lines(page: Path) -> list[str]:
    """One line per line of a fenced block wider than the site's content column: `where: what; the fix`."""
    from dts.reports.console import WIDTH

    generated_page = page.parent.name == "reference"
    found = []
    for block in docs_blocks.blocks(page):
        generated = generated_page or any(m.startswith("generated:") for m in block.markers)
        for where, line, sample in block_lines(block):
            if len(line) <= WIDTH:
                continue
            if block.runnable:
                what = f"a command line of {len(line)} characters (at most {WIDTH})"
                fix = "put its comment in the text under the block, or break the command with \\"
            else:
                what = f"a line of {len(line)} characters in a {block.lang or 'plain'} block (at most {WIDTH})"
                fix = (
                    "make the report that prints it fit, then `make docs-samples`"
                    if sample
                    else "make the code that draws it fit, then `make docs-ref`"
                    if generated
                    else "wrap it, cut it (`…`) and say so above the block, or draw it narrower"
                )
            found.append(f"{where}: {what}: {fix}")
    return found


def main(argv: list[str] | None = None) -> int:
    import docs_reference

    status = docs_reference.main(["--check"])
    problems = [note for page in guide_pages() for note in workshop_notes(page)]
    problems += [problem for page in guide_pages() for problem in command_problems(page)]
    problems += coverage_problems()
    problems += [problem for page in all_pages() for problem in wide_lines(page)]
    problems += docs_samples.changed_renderers()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if status or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
