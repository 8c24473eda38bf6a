"""The console reports are shown on: whether a person is watching (a terminal, not CI), the one table
renderer, as plain aligned lines (piped, CI, files) or as a rich Table (a terminal), and `fit`, which wraps
a long line under its own text. Plain reports are laid out for WIDTH columns (the docs' code blocks, an
ordinary terminal): a table gives way in one column (`shrink`), a long line goes on under itself.

    if interactive(sys.stdout):
        Console().print(rich_table(columns, rows, right={2, 3}, header_style="bold"))
    else:
        print("\\n".join(table_lines(columns, rows, right={2, 3})))
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable, Collection, Sequence
from typing import Any, TextIO

WIDTH = 88  # columns a plain report is laid out for: the docs' content column, an ordinary terminal
GAP = "…"  # ends a cell cut to fit
# where a too-long line goes on when not told: under an example's second column (after a run of two
# spaces), after a one- or two-word `label: `, or under the line's first word
HANG = re.compile(r"^\s*\S.*?\s{2,}(?=\S)|^\s*[A-Za-z]+(?: [A-Za-z]+)?: (?=\S)|^\s*")


def interactive(stream: TextIO) -> bool:
    """Colour, redrawn bars and live tables only for a person at a terminal: not when piped, not under CI=true."""
    return stream.isatty() and os.environ.get("CI", "").lower() != "true"


def fit(line: str, width: int = WIDTH, hang: int | None = None) -> list[str]:
    """A line as lines of at most `width` characters (a word longer than that stays whole), each
    continuation indented by `hang` characters, or under the line's own text (HANG)."""
    if len(line) <= width:
        return [line]
    if hang is None:
        hang = len(HANG.match(line)[0])
    if hang > width - 30:  # a column too far right for the text left to it: under the first word instead
        hang = len(line) - len(line.lstrip())
    return textwrap.wrap(line, width, subsequent_indent=" " * hang, break_long_words=False, break_on_hyphens=False)


def table_lines(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: Collection[int] = (),
    align_headers: bool = True,
    rule: bool = False,
    shrink: int | None = None,
    wrap: bool = False,
    width: int = WIDTH,
) -> list[str]:
    """A plain text table: each column padded to its widest cell, the columns numbered in `right`
    right-aligned (their headers too, unless not `align_headers`), the others left-aligned; `rule`: a line
    of dashes under the header. Trailing spaces are cut. `shrink`: the column that gives way when the table
    is wider than `width` (never narrower than its header, or 12): its longer cells cut with GAP, or with
    `wrap` continued on the next lines of their row (the other cells blank there)."""
    table = [[str(c) for c in row] for row in (columns, *rows)]
    widths = [max(len(c) for c in column) for column in zip(*table, strict=True)]
    if shrink is not None:
        room = width - sum(w for i, w in enumerate(widths) if i != shrink) - 2 * (len(widths) - 1)
        room = max(room, len(table[0][shrink]), 12)
        if widths[shrink] > room:
            table = [table[0], *(line for row in table[1:] for line in _narrowed(row, shrink, room, wrap))]
            widths[shrink] = max(len(row[shrink]) for row in table)
    lines = []
    for n, row in enumerate(table):
        right_here = right if n or align_headers else ()
        cells = (
            c.rjust(w) if i in right_here else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append("  ".join(cells).rstrip())
        if rule and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _narrowed(row: list[str], column: int, room: int, wrap: bool) -> list[list[str]]:
    """A table row whose cell in `column` is at most `room` wide: cut with GAP, or wrapped over several
    rows (a continuation indented two more than the cell)."""
    cell = row[column]
    if len(cell) <= room:
        return [row]
    if not wrap:
        return [[*row[:column], cell[: room - len(GAP)].rstrip() + GAP, *row[column + 1 :]]]
    indent = len(cell) - len(cell.lstrip()) + 2
    parts = fit(cell, room, hang=indent)
    return [
        [*row[:column], parts[0], *row[column + 1 :]],
        *([""] * column + [p] + [""] * (len(row) - column - 1) for p in parts[1:]),
    ]


def rich_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    no_wrap: Collection[int] = (),
    row_style: Callable[[Sequence[str]], str | None] | None = None,
    **options: Any,
):
    """The same table as a rich Table (for a terminal): `right` columns right-aligned, `no_wrap` columns
    never wrapped, each row styled by `row_style(row)`; `options` go to rich.table.Table (title, box, ...)."""
    from rich.table import Table

    table = Table(**options)
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index in right else "left", no_wrap=index in no_wrap)
    for row in rows:
        table.add_row(*row, style=row_style(row) if row_style else None)
    return table
