"""Stopping what a killed driver's local cluster left: real processes carrying the mark of a dead driver, of a live
one, and none; only the first kind is stopped, SIGTERM ignored or not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sweeps import leftovers

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); " \
                  "time.sleep(120)"


def start(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], env=env, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # its handler is set
    return proc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_only_processes_of_a_driver_that_is_gone_are_stopped():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_identity = leftovers._identity(dead.pid)
    dead.wait()
    live = start(dict(os.environ))  # stands for a driver still running
    base = {k: v for k, v in os.environ.items() if k != leftovers.MARK_ENV}
    orphan = start(base | {leftovers.MARK_ENV: dead_identity})
    reused = start(base | {leftovers.MARK_ENV: f"{live.pid}:1"})  # the pid runs, but as another process
    in_use = start(base | {leftovers.MARK_ENV: leftovers._identity(live.pid)})
    unmarked = start(base)
    procs = [live, orphan, reused, in_use, unmarked]
    try:
        begun = time.monotonic()
        stopped = leftovers.stop_leftovers(grace=1.0)
        took = time.monotonic() - begun
        time.sleep(0.5)
        state = {name: p.poll() for name, p in zip(("live", "orphan", "reused", "in_use", "unmarked"), procs,
                                                   strict=True)}
        print(f"\nstopped in {took:.1f} s: {stopped}; exit codes (None: running): {state}")
        pids = {int(s.split()[0]) for s in stopped}  # (and any other dead driver's leftovers on this machine)
        assert {orphan.pid, reused.pid} <= pids and not pids & {live.pid, in_use.pid, unmarked.pid}
        assert state["orphan"] == state["reused"] == -9  # SIGTERM ignored: killed after the grace period
        assert state["live"] is state["in_use"] is state["unmarked"] is None
    finally:
        for p in procs:
            p.kill()
            p.wait()
