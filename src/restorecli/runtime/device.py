"""Device and precision choices, parsed once for every command.

The classic mistakes are made here: a GPU id of 0 read as "no GPU", or fp16
chosen on a CPU that cannot run it.
"""

from __future__ import annotations

import re

import torch

from ..errors import DeviceError, UsageError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(choice: str = "auto") -> torch.device:
    """auto | cpu | cuda | cuda:N | N | mps -> a device that exists, or a DeviceError."""
    choice = (choice or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"\d+", choice):
        choice = f"cuda:{choice}"
    match = re.fullmatch(r"cuda(?::(\d+))?", choice)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {choice}: CUDA is not available in this PyTorch build or machine",
                "use --device cpu, or install a CUDA build of torch",
            )
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {choice}: only {torch.cuda.device_count()} CUDA device(s) visible",
                "pick an index below that or check CUDA_VISIBLE_DEVICES",
            )
        return torch.device("cuda", index)
    if choice == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise DeviceError("--device mps: Apple MPS is not available here", "use --device cpu")
        return torch.device("mps")
    raise UsageError(f"--device {choice} is not understood", "use auto, cpu, cuda, cuda:N or mps")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto = fp32 on CPU and MPS (exact, and reduced precision is not faster there); fp16 on CUDA.

    fp16 is what the official ResShift scripts use on GPU; fp32 stays available
    everywhere for bit-faithful reproduction.
    """
    precision = (precision or "auto").lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision} is not understood", "use auto, fp32, fp16 or bf16")
    dtype = PRECISIONS[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise DeviceError(
            "--precision fp16 is not supported on the CPU",
            "use --precision fp32 (default) or bf16 on the CPU",
        )
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError("--precision bf16: this GPU has no bf16 support", "use --precision fp16")
    return dtype


def native_cpu_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def slow_precision_note(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why a reduced precision the user chose will run slower than fp32 here, or None.

    On a CPU without native bf16 (no AVX512-BF16/AMX: oneDNN has no bf16 convolution
    there) torch falls back to its reference convolution, measured ~100x slower than
    fp32 on an AVX2 EPYC (docs/performance.md). The run is still correct, so this is
    a warning, not an error.
    """
    if device.type != "cpu" or dtype != torch.bfloat16:
        return None
    if native_cpu_bf16():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"--precision bf16: this CPU ({capability}) has no native bf16 convolutions, so it runs "
        "far slower than fp32 (about 100x measured); use --precision fp32 (the CPU default)"
    )
