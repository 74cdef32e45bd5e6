"""mte.heap: freed heap pages go back to the OS on every TRIM_EVERY-th step, and only then."""

from __future__ import annotations

import os
import sys

import pytest

from mte import heap


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._malloc_trim() is None, reason="glibc only")
def test_trim_returns_freed_heap_pages_on_its_steps_only():
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB of heap blocks (under the mmap threshold)
    keep = blocks[-1]  # the heap's top stays in use: glibc cannot shrink it by itself
    del blocks
    held = rss_mb()
    heap.trim(heap.TRIM_EVERY - 1)
    assert rss_mb() > held - 50, "trimmed on a step that is not a multiple of TRIM_EVERY"
    heap.trim(heap.TRIM_EVERY)
    assert rss_mb() < held - 150, f"freed heap pages stayed resident: {held:.0f} → {rss_mb():.0f} MiB"
    assert len(keep) == 64 * 1024
