"""The console reports are shown on: whether a person is watching (a terminal, not CI), and the one table
renderer, as plain aligned lines (piped, CI, files) or as a rich Table (a terminal).

    if interactive(sys.stdout):
        Console().print(rich_table(columns, rows, right={2, 3}, header_style="bold"))
    else:
        print("\\n".join(table_lines(columns, rows, right={2, 3})))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from typing import Any, TextIO


def interactive(stream: TextIO) -> bool:
    """Colour, redrawn bars and live tables only for a person at a terminal: not when piped, not under CI=true."""
    return stream.isatty() and os.environ.get("CI", "").lower() != "true"


def table_lines(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: Collection[int] = (),
    align_headers: bool = True,
    rule: bool = False,
) -> list[str]:
    """A plain text table: each column padded to its widest cell, the columns numbered in `right`
    right-aligned (their headers too, unless not `align_headers`), the others left-aligned; `rule`: a line
    of dashes under the header. Trailing spaces are cut."""
    table = [[str(c) for c in row] for row in (columns, *rows)]
    widths = [max(len(c) for c in column) for column in zip(*table, strict=True)]
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
