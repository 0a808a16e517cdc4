"""Printing rich tables on stdout: fitted to a terminal, whole everywhere else.

On a terminal rich fits a table to the window (folding or shortening cells).
In a pipe or a file there is no window: rich would assume 80 columns and cut
cells ("re…"). There every row is printed in full instead, at the table's
natural width, left-aligned, without colour or trailing spaces.
"""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO


def print_table(table: Any, file: TextIO | None = None) -> None:
    """Print a `rich.table.Table` on `file` (stdout): fitted on a terminal, never truncated otherwise."""
    from rich.console import Console
    from rich.measure import Measurement

    out = file if file is not None else sys.stdout
    console = Console(file=out)
    if console.is_terminal:
        console.print(table)
        return
    table.title_justify = "left"
    table.caption_justify = "left"
    natural = Measurement.get(console, console.options.update(width=1_000_000), table).maximum
    buffer = io.StringIO()
    Console(
        file=buffer, width=max(natural, 20), color_system=None, force_terminal=False, highlight=False, emoji=False
    ).print(table)
    out.write("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n")
    out.flush()
