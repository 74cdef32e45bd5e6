"""The `mte` executable's first step: run the command under TCMalloc where the machine has it.

glibc's malloc serves PyTorch's CPU training badly: length-grouped batches come in many shapes, so its heap
fragments (the peak grows with the steps) and the pages it hands back are faulted in again (1.1–1.3 million page
faults in one epoch of 1200 MRPC pairs). TCMalloc keeps freed blocks in per-size lists: the same whole `mte run`
took 0.91× the time at 0.74× the peak memory (benchmarks/RESULTS.md), with logits and weights bit for bit the
same (torch aligns tensor memory to 64 bytes whatever the allocator, so every kernel takes the same path).

An allocator is chosen when a process starts, so `main` executes the same command line again with the library
in LD_PRELOAD, as PyTorch's CPU launcher (`torch.backends.xeon.run_cpu`) does; the process keeps its id, and its
children (a local Ray, its trial workers) inherit the setting. `MTE_MALLOC=system` keeps glibc's malloc. Debian
and Ubuntu ship TCMalloc as `libtcmalloc-minimal4` (scripts/setup.sh and the Dockerfile install it); without it
mte runs on glibc's malloc.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

from mte.allocator import preloaded_allocator

MALLOC_ENV = "MTE_MALLOC"
CHOICES = ("tcmalloc", "system")  # the first is the default
LIBRARIES = ("tcmalloc_minimal", "tcmalloc")  # gperftools' TCMalloc, without and with its profilers


def tcmalloc() -> str | None:
    """TCMalloc's shared library as the dynamic loader finds it (e.g. 'libtcmalloc_minimal.so.4'), or None."""
    return next((lib for name in LIBRARIES if (lib := ctypes.util.find_library(name))), None)


def wanted() -> str | None:
    """The library an `mte` command started with this environment preloads: TCMalloc's where it is installed,
    unless `MTE_MALLOC=system` or the platform is not Linux (then None). A bad `MTE_MALLOC` raises ValueError."""
    choice = os.environ.get(MALLOC_ENV, CHOICES[0])
    if choice not in CHOICES:
        raise ValueError(f"{MALLOC_ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    return tcmalloc() if choice == "tcmalloc" and sys.platform.startswith("linux") else None


def command_allocator() -> str:
    """The allocator's file name an `mte` command started with this environment runs under: the one preloaded
    already, else `wanted()`, else 'system'."""
    return os.path.basename(preloaded_allocator() or wanted() or "system")


def exec_under_tcmalloc() -> None:
    """Replace this process by the same command line with TCMalloc preloaded; return where it is not wanted or
    not installed, or another allocator is preloaded already (this process after its exec, or the user's)."""
    try:
        lib = wanted()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if lib is None or preloaded_allocator():
        return
    preload = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, os.environ | {"LD_PRELOAD": preload})
    except OSError:  # e.g. a frozen executable: carry on with the allocator we have
        return


def main() -> None:
    """Console entry point: `mte.cli.main` under TCMalloc."""
    exec_under_tcmalloc()
    from mte.cli import main as cli_main

    cli_main()
