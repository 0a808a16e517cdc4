"""Say what a pickle-based checkpoint holds, without running it: which code it would call.

torch's safe loader (`torch.load(weights_only=True)`) refuses a pickle that
calls anything but tensor rebuilding, but its message then advises re-running
with `weights_only=False`, the one thing a user must not do with a file that
pickles `os.system`. For zip checkpoints torch can list the offending globals;
for legacy `torch.save` files and plain pickles it cannot. `pickle_refusal`
reads the pickle opcodes (pickletools: nothing is executed, nothing imported)
and names the first global that is code, or says that the file is a plain
pickle rather than a PyTorch checkpoint.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import pickletools
from pathlib import Path
from typing import Any

# The pickled names a weights file may hold: tensor rebuilding and plain containers.
DATA_PREFIXES = ("torch.", "collections.OrderedDict", "numpy.")
DATA_NAMES = frozenset(
    f"builtins.{t}"
    for t in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "int",
        "float",
        "str",
        "bool",
        "bytes",
        "bytearray",
        "complex",
        "slice",
    )
) | {"__builtin__.set", "collections.defaultdict", "_codecs.encode"}
# Config objects of training containers: not code restorecli would run (see weights.InertObject).
CONFIG_PREFIXES = ("omegaconf.", "typing.")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_PICKLES = 6  # a legacy file: magic, protocol, sys info, the object, storage keys (then raw bytes)
REFUSAL_HINT = (
    "restorecli never runs code from a weights file: use the official weights file (see 'restore models'), "
    "or a safetensors or plain state-dict copy from its publisher"
)


def _globals_in(fh: Any) -> tuple[list[str], str | None, bool]:
    """(globals named, first opcode after PROTO, complete) of the pickle at the file's position."""
    names: list[str] = []
    strings: list[Any] = []  # recent string pushes, for STACK_GLOBAL
    memo: dict[int, Any] = {}
    first: str | None = None
    for op, arg, _pos in pickletools.genops(fh):
        name = op.name
        if first is None and name not in ("PROTO", "FRAME"):
            first = name
        if name in ("GLOBAL", "INST"):
            names.append(str(arg).replace(" ", ".", 1))
        elif name in (
            "SHORT_BINUNICODE",
            "BINUNICODE",
            "BINUNICODE8",
            "UNICODE",
            "STRING",
            "BINSTRING",
            "SHORT_BINSTRING",
        ):
            strings.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif name == "STACK_GLOBAL":
            module, qual = (strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?")
            names.append(f"{module}.{qual}")
        if name == "STOP":
            return names, first, True
    return names, first, False


def scan(path: Path | str) -> tuple[str, list[str]]:
    """('legacy' | 'pickle' | 'zip' | 'other', globals named) of a checkpoint file; reads opcodes only."""
    with open(path, "rb") as fh:
        head = fh.read(2)
        if head.startswith(b"PK"):
            return "zip", []
        if head[:1] != b"\x80":
            return "other", []
        fh.seek(0)
        kind, found = "pickle", []
        for i in range(MAX_PICKLES):
            try:
                names, _first, done = _globals_in(fh)
            except Exception:  # the raw tensor bytes after the pickles, or a damaged stream
                break
            found += names
            if i == 0:
                fh.seek(0)
                try:
                    magic = next((a for op, a, _ in pickletools.genops(fh) if op.name in ("LONG1", "LONG")), None)
                except Exception:
                    magic = None
                kind = "legacy" if magic == LEGACY_MAGIC else "pickle"
                if kind == "pickle":
                    return kind, found
                _skip_one(fh)
            if not done:
                break
    return kind, found


def _skip_one(fh: Any) -> None:
    """Position `fh` after the first pickle again (genops consumed it a second time above)."""
    fh.seek(0)
    for op, _a, _p in pickletools.genops(fh):
        if op.name == "STOP":
            return


def is_data(name: str) -> bool:
    return name.startswith(DATA_PREFIXES) or name in DATA_NAMES or name.startswith(CONFIG_PREFIXES)


def pickle_refusal(path: Path | str) -> str | None:
    """A phrase saying what a non-zip pickle file holds when the safe loader refused it, or None.

    'it is a legacy PyTorch file that pickles posix.system, which is code, not weights', or
    'it is a plain pickle, not a PyTorch checkpoint', ...
    """
    try:
        kind, names = scan(path)
    except OSError:
        return None
    if kind in ("zip", "other"):
        return None
    what = "a legacy PyTorch file" if kind == "legacy" else "a plain pickle"
    code = [n for n in names if not is_data(n)]
    if code:
        return f"it is {what} that pickles {code[0]}, which is code, not weights"
    if kind == "pickle":
        return "it is a plain pickle, not a PyTorch checkpoint"
    return None
