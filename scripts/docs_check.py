"""`make docs-check`: the docs are the code's and read as guides, not as a lab notebook.

    python scripts/docs_check.py          # exit 0, or 1 with one line per problem: page:line: what, and the fix

Checks, in order:
- the generated reference (CLI, config keys, environment, exit codes, make targets, README's blocks, the
  tables drawn from result files) matches the code: scripts/docs_reference.py --check;
- the guides (README.md, SCALING.md and docs/, not the generated reference, the samples or the changelog)
  carry no workshop notes in their prose: a date, a commit reference, "these machines", "previous commit",
  `git worktree`, "could not be run here", a path of the machine they were written on, this machine's host
  name. Pasted output in code blocks is
  exempt (it is real output); history goes to CHANGELOG.md, a run's method to the performance page.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.S | re.M)
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


def guide_pages(root: Path = ROOT) -> Iterator[Path]:
    """The pages a user reads as guides: README, SCALING.md and docs/ (not the generated reference, the
    samples or the changelog)."""
    yield root / "README.md"
    yield root / "SCALING.md"
    for page in sorted((root / "docs").rglob("*.md")):
        if page.parent.name not in ("reference", "samples") and page.name != "changelog.md":
            yield page


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the text outside fenced code blocks."""
    fenced = {n for m in FENCE.finditer(text) for n in range(*line_span(text, m.start(), m.end()))}
    for number, line in enumerate(text.splitlines(), 1):
        if number not in fenced:
            yield number, line


def line_span(text: str, start: int, end: int) -> tuple[int, int]:
    return text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 2


def workshop_notes(page: Path, host: str | None = None) -> list[str]:
    """One line per workshop note in the page's prose: `page:line: what (found); fix`."""
    rules = dict(WORKSHOP)
    host = socket.gethostname() if host is None else host
    if host and host != "localhost":
        rules[rf"@{re.escape(host)}\b|\b{re.escape(host)}-\d+\b"] = "this machine's host name"
    shown = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    found = []
    for number, line in prose_lines(page.read_text()):
        for pattern, what in rules.items():
            for match in re.finditer(pattern, line, flags=re.I):
                found.append(f"{shown}:{number}: {what} ({match.group(0)!r}); {FIX}")
    return found


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    import docs_reference

    status = docs_reference.main(["--check"])
    problems = [note for page in guide_pages() for note in workshop_notes(page)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if status or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
