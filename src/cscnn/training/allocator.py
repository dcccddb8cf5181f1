"""Keep freed memory in the process for the next training step (glibc's allocator, Linux).

A training step allocates and frees the same large tensors (a layer's feature maps for ~1000 images are tens
of MB) every time. glibc serves blocks above its mmap threshold (at most 32 MB, adapted upward only after a
free) with fresh `mmap`s and unmaps them on `free`, so every step the kernel hands out and zeroes the same
pages again. On 2 CPU cores that page-fault work was half of a plain CNN step (a backbone forward+backward
of 1152 images: 108 ms, 50 ms with freed blocks kept; benchmarks/train_throughput.py has the whole step).
Raising the mmap and trim thresholds keeps freed blocks in the heap for reuse. The peak memory is the same
(the same tensors are alive at the peak); the heap is simply not handed back between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; the heap keeps up to 1 GiB free at its top
_done = False


def reuse_freed_memory() -> bool:
    """Set glibc's thresholds once per process; False (and nothing changed) where glibc is not the allocator."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.info("could not tune glibc malloc; training runs at the allocator's default")
    _done = ok
    return ok
