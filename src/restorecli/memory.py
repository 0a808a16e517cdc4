"""How much memory a run may use: free device memory on a GPU, available RAM on the CPU.

Engines size their tiles from this (`Engine.auto_tile`), so one place decides
what "free" means: on Linux `MemAvailable` (free plus reclaimable page cache),
which is what a new allocation can really get, not `MemFree`.
"""

from __future__ import annotations

import os

import torch


def available_ram() -> int:
    """Bytes of RAM a new allocation can get now (8 GiB when the system will not say)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_budget(device: torch.device, *, gpu_fraction: float, cpu_fraction: float, cpu_cap: int | None = None) -> int:
    """Bytes one image's working set may take on `device`: a fraction of what is free there."""
    if device.type == "cuda":
        return int(cuda_free_bytes(device) * gpu_fraction)
    budget = int(available_ram() * cpu_fraction)
    return min(budget, cpu_cap) if cpu_cap is not None else budget


def cuda_free_bytes(device: torch.device) -> int:
    """What this process can still allocate on a CUDA device.

    The driver's free memory plus what torch's caching allocator holds but does not
    use, and never more than a `torch.cuda.set_per_process_memory_fraction` limit
    leaves (the driver does not know about that limit; the allocator enforces it).
    """
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    cached_unused = torch.cuda.memory_reserved(device) - allocated
    limit_left = int(total * torch.cuda.get_per_process_memory_fraction(device)) - allocated
    return max(0, min(free + cached_unused, limit_left))


_MALLOC_TUNED = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to serve buffers up to `threshold` bytes from its heap and keep freed memory.

    By default glibc maps every allocation above 32 MiB freshly from the kernel and
    unmaps it on free, so each full-resolution feature map is page-faulted (and
    zeroed by the kernel) again: measured on a 1280x720 DiffIR deblur, 44 M page
    faults and 97 s of system time for 118 s of compute; with the heap kept, 1 M
    faults and 2.5 s (wall 146 s -> 115 s). The price: heap fragmentation raises the
    peak (2.0 -> 3.5 GiB there) and the process keeps it until it exits, so it is
    opt-in (RESTORECLI_MALLOC_TUNING=1). No-op (False) where there is no glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, ctypes.c_int(threshold)))
        ok = bool(libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))) and ok
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok
