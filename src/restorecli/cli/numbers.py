"""Every numeric option is held to its type's range before any work: a usage error (exit 2), not a
failure per file later.

Click accepts integers of any size and the floats `nan` and `inf`, and its range checks pass
`nan` (every comparison with it is false). The engines hand integers to torch and numpy, which
take 64 bits at most, and no option means anything with a non-finite value. So each INT and
FLOAT option of the command tree gets a type that converts as before, then refuses an integer
outside 64 bits (a seed: 0 to 2**64 - 1, what torch and numpy seed with) and a float that is
not finite.
"""

from __future__ import annotations

import math
from typing import Any

import typer

INT64 = (-(2**63), 2**63 - 1)
SEED = (0, 2**64 - 1)


def bound_numbers(command: Any) -> None:
    """Give every int and float option of `command` and its sub-commands the check (in place)."""
    for param in getattr(command, "params", []):
        desc = getattr(param, "type_descriptor", None)
        if desc is not None and desc.annotation in (int, float) and not getattr(desc, "is_list", False):
            _guard(param, SEED if param.name == "seed" else INT64)
    for sub in getattr(command, "commands", {}).values():
        bound_numbers(sub)


def _guard(param: Any, ints: tuple[int, int]) -> None:
    convert = param.process_value

    def process_value(ctx: Any, value: Any) -> Any:
        out = convert(ctx, value)
        if isinstance(out, float) and not math.isfinite(out):
            raise typer.BadParameter(f"{out} is not a finite number", ctx=ctx, param=param)
        if isinstance(out, int) and not isinstance(out, bool) and not ints[0] <= out <= ints[1]:
            raise typer.BadParameter(f"{out} is out of range ({ints[0]} to {ints[1]})", ctx=ctx, param=param)
        return out

    param.process_value = process_value
