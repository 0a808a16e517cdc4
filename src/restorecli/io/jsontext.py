"""JSON that every reader accepts: no bare Infinity or NaN.

Python's `json` writes a non-finite float as `Infinity` / `NaN`, which is not JSON:
`jq`, JavaScript's `JSON.parse` and strict parsers reject the whole document. PSNR of
two identical images is infinite, so scores written to reports, training logs and
bundle metadata go through here and carry such values as the strings "inf", "-inf"
and "nan" (what `restore eval --json` has always written).
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_json(obj: Any) -> Any:
    """`obj` with every non-finite float (in nested dicts, lists, tuples) replaced by its string name."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` of `finite_json(obj)`, refusing anything that would still not be strict JSON."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)
