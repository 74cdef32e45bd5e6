"""Which malloc this process runs on: `mte.launch` preloads TCMalloc, and provenance records what a run used."""

from __future__ import annotations

import os
from pathlib import Path


def preload_entries() -> list[str]:
    """The libraries in this process's LD_PRELOAD (the dynamic loader splits it on spaces and colons)."""
    return os.environ.get("LD_PRELOAD", "").replace(":", " ").split()


def preloaded_allocator() -> str | None:
    """The malloc replacement this process was started with (LD_PRELOAD: TCMalloc, jemalloc, …), if any."""
    return next((e for e in preload_entries() if "malloc" in Path(e).name), None)


def allocator() -> str:
    """What this process allocates with: the preloaded library's file name, else 'system' (glibc's on Linux)."""
    return Path(preloaded_allocator() or "system").name
