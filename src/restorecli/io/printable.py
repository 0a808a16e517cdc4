"""Text from outside (file and folder names, model names, URLs, a server's reason phrase) printed as it is.

A file may be named `a\nb.png`; printed as it is, the name splits a progress
or `failed:` line in two and breaks every script that reads stderr line by
line, and an ANSI escape in a bundle's name would reach the terminal raw.
`printable` writes control characters as escapes (`\n`, `\t`, `\x1b`), as
`ls -b` does; the JSON report keeps the real names (JSON escapes them).

Rich reads `[...]` in a string as markup: a name holding `[/]` makes it raise
after the work is done, and `[red]` would restyle the line. Every message that
carries outside text is printed as `plain(...)` (a rich Text, never parsed as
markup); where a string must stay markup (a table cell beside styled ones, a
progress description), the outside part goes through `markup_safe`.

No imports from other restorecli modules, so the module can move freely.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every control character written as an escape, so it prints on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def plain(text: object, style: str = "") -> Any:
    """A rich Text of `text` made printable: printed as written, never read as markup."""
    from rich.text import Text

    return Text(printable(str(text)), style=style)


def markup_safe(text: object) -> str:
    """`text` made printable and escaped, to sit inside a rich markup string as written."""
    from rich.markup import escape

    return escape(printable(str(text)))
