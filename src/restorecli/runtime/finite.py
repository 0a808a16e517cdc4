"""A restored image with NaN or Inf values is a failure, not a black picture.

Weights with a NaN or Inf (a damaged file, a diverged training run) make a
network output NaN; converting that to 8 or 16 bits gives a black (or
arbitrary) image and a numpy RuntimeWarning, the run says "restored", and
because finished outputs are skipped on the next run the bad image stays.
`output_problem` says what is wrong with an output tensor, and `guard` turns
such an output into the ImageFailed the pipeline reports for that file
(nothing is written).

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

from typing import Any

from ..errors import ImageFailed


def output_problem(output: Any) -> str | None:
    """'N of M values are NaN/Inf ...' for a tensor with non-finite values, else None."""
    import torch

    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        return None
    finite = torch.isfinite(output)
    if bool(finite.all()):
        return None
    nan = int(torch.isnan(output).sum())
    inf = int(output.numel() - int(finite.sum()) - nan)
    kinds = " and ".join(k for k, n in (("NaN", nan), ("Inf", inf)) if n)
    return f"the network output has {nan + inf} of {output.numel()} values {kinds}"


def guard(result: Any) -> Any:
    """`result` itself, or an ImageFailed when it is a tensor with non-finite values."""
    problem = output_problem(result)
    if problem is None:
        return result
    return ImageFailed(
        f"{problem}; nothing was written",
        "the model's weights are damaged (NaN or Inf values): download, convert or train them again",
    )
