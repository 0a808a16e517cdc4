"""Messages stay one line each, whatever characters file names hold.

A file may be named `a\nb.png`; printed as it is, the name splits a progress
or `failed:` line in two and breaks every script that reads stderr line by
line. `printable` writes control characters as escapes (`\n`, `\t`, `\x1b`),
as `ls -b` does; the JSON report keeps the real names (JSON escapes them).

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every control character written as an escape, so it prints on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
