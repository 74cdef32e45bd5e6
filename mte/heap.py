"""Handing freed heap memory back to the operating system during CPU training.

Length-grouped batches come in many shapes, so glibc's heap fills with free blocks of every size that it keeps
resident: the process's peak memory grows with the number of steps (full MRPC: 0.1–0.2 GB above what the same
fine-tune needs). `malloc_trim(0)` returns those pages; the allocations that reuse them fault them in again,
which costs time, so it runs every `TRIM_EVERY` optimizer steps. Measured on full MRPC (115 steps of batch 32,
2 threads, whole `mte run` processes): every step cut the peak by 0.4 GB but took 27% longer, every 5 steps
0.2 GB and 11%; every 20 steps (the default) 2.17–2.21 GB against 2.27–2.36 GB untrimmed, for 0–2.2% of the
time (two A/B runs; benchmarks/RESULTS.md). `MTE_HEAP_TRIM_EVERY=0` turns it off. Values are untouched: only
where freed memory lives changes. The `mte` command normally runs under TCMalloc instead (`mte.launch`), which
needs none of this: with another allocator preloaded, trimming glibc's unused heap is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from pathlib import Path

TRIM_ENV = "MTE_HEAP_TRIM_EVERY"  # another interval; 0 turns trimming off (off anyway under a preloaded malloc)
TRIM_EVERY = int(os.environ.get(TRIM_ENV, "20"))  # optimizer steps between trims


def preload_entries() -> list[str]:
    """The libraries in this process's LD_PRELOAD (the dynamic loader splits it on spaces and colons)."""
    return os.environ.get("LD_PRELOAD", "").replace(":", " ").split()


def preloaded_allocator() -> str | None:
    """The malloc replacement this process was started with (LD_PRELOAD: TCMalloc, jemalloc, …), if any."""
    return next((e for e in preload_entries() if "malloc" in Path(e).name), None)


def allocator() -> str:
    """What this process allocates with: the preloaded library's file name, else 'system' (glibc's on Linux)."""
    return Path(preloaded_allocator() or "system").name


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl) or serves no allocations."""
    if preloaded_allocator():
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def trim(step: int) -> None:
    """Return freed heap pages to the OS after every `TRIM_EVERY`-th step (CPU training only: call it there)."""
    if TRIM_EVERY > 0 and step % TRIM_EVERY == 0 and (fn := _malloc_trim()) is not None:
        fn(0)
