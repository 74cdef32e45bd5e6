"""mte.launch: the `mte` command runs again, as the same process, under TCMalloc where it is installed; on glibc's
malloc when asked; a bad choice is one line and exit code 2. (Logits bit for bit the same under both: RESULTS.md.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mte import launch

LIB = launch.tcmalloc()
needs_tcmalloc = pytest.mark.skipif(LIB is None, reason="TCMalloc is not installed (Debian: libtcmalloc-minimal4)")
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")

# What a process reports after the launcher's step: its pid, how many of its mappings are TCMalloc's, its argv,
# and its allocator as mte records it.
PROBE = """import json, os, sys
from mte import allocator, launch
launch.exec_under_tcmalloc()
maps = sum("tcmalloc" in line for line in open("/proc/self/maps"))
print(json.dumps([os.getpid(), maps, sys.argv[1:], allocator.allocator()]))"""


def clean_env(**env: str) -> dict[str, str]:
    """This environment without a preload or an allocator choice, plus `env`."""
    return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", launch.MALLOC_ENV)} | env


def probe(**env: str) -> tuple[subprocess.Popen, list]:
    proc = subprocess.Popen([sys.executable, "-c", PROBE, "a b", "--c"], env=clean_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return proc, json.loads(out)


@needs_linux
@needs_tcmalloc
def test_the_same_process_runs_its_command_line_again_under_tcmalloc():
    proc, (pid, maps, argv, used) = probe()
    print(f"\nlauncher: pid {pid} (started as {proc.pid}), {maps} TCMalloc mappings, argv {argv}, malloc {used}")
    assert pid == proc.pid  # exec, not a child
    assert maps > 0 and used == LIB
    assert argv == ["a b", "--c"]  # the command line exactly as given


@needs_linux
def test_mte_malloc_system_keeps_glibc():
    _, (_, maps, argv, used) = probe(MTE_MALLOC="system")
    assert maps == 0 and used == "system" and argv == ["a b", "--c"]


@needs_tcmalloc
def test_the_mte_command_reports_its_allocator():
    on = subprocess.run([sys.executable, "-m", "mte", "--version"], env=clean_env(), capture_output=True, text=True)
    off = subprocess.run([sys.executable, "-m", "mte", "--version"], env=clean_env(MTE_MALLOC="system"),
                         capture_output=True, text=True)
    print(f"\n{on.stdout.strip()}\n{off.stdout.strip()}")
    assert on.returncode == off.returncode == 0
    assert on.stdout.strip().endswith(f"malloc {LIB})") and off.stdout.strip().endswith("malloc system)")


def test_a_bad_mte_malloc_is_one_line_and_exit_code_2():
    r = subprocess.run([sys.executable, "-m", "mte", "--version"], env=os.environ | {"MTE_MALLOC": "jemalloc"},
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["error: MTE_MALLOC='jemalloc': expected one of tcmalloc, system"]
