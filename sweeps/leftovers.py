"""What a local cluster of mte's left running when its driver was killed (`kill -9`, an OOM kill).

Ray's processes die with their driver except the dashboard and runtime-env agents: re-parented to init, they keep
their listeners and a few hundred MB. Each local cluster mte starts is marked, through an environment variable
that every process of that cluster inherits, with its driver's identity (pid and start time); before the next
local cluster starts, processes whose mark names a driver that no longer runs are stopped. A process without the
mark (another Ray, a cluster mte joined) or whose driver still runs is never touched. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

MARK_ENV = "MTE_RAY_DRIVER"  # "<pid>:<start time>" of the driver that started the local cluster
PROC = Path("/proc")
RELEASED = threading.Event()  # set when this process stops its local cluster itself


def mark() -> None:
    """Mark the processes of the local cluster this process is about to start as this driver's."""
    identity = _identity(os.getpid())
    if identity:
        os.environ[MARK_ENV] = identity


def stop_leftovers(grace: float = 3.0) -> list[str]:
    """Stop what local clusters of dead mte drivers left: SIGTERM, then SIGKILL after `grace` seconds (the
    dashboard agent ignores SIGTERM). Returns the stopped processes as 'pid name'."""
    found = _leftovers()
    names = [f"{pid} {_name(pid)}" for pid in found]
    for pid in found:
        _signal(pid, found[pid], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_mark_of(pid) == found[pid] for pid in found):
        time.sleep(0.1)
    for pid in found:
        _signal(pid, found[pid], signal.SIGKILL)
    return names


def own() -> dict[int, str]:
    """pid → name of the live processes of the local cluster this process started (empty if it started none)."""
    value = os.environ.get(MARK_ENV)
    if not value or value != _identity(os.getpid()) or not PROC.is_dir():
        return {}
    return {pid: _name(pid) for pid in _pids() if _mark_of(pid) == value and not _zombie(pid)}


def stop_own() -> None:
    """SIGKILL what is left of this process's local cluster (when Ray cannot stop it any more)."""
    value = os.environ.get(MARK_ENV, "")
    for pid in own():
        _signal(pid, value, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(e.name) for e in PROC.iterdir() if e.name.isdigit() and int(e.name) != os.getpid()]


def _leftovers() -> dict[int, str]:
    """pid → mark, for the marked processes whose driver is gone (no process with its pid and start time)."""
    if not PROC.is_dir():
        return {}
    mine = os.environ.get(MARK_ENV)
    found: dict[int, str] = {}
    for pid in _pids():
        value = _mark_of(pid)
        if not value or value == mine:
            continue
        driver, _, _ = value.partition(":")
        if driver.isdigit() and _identity(int(driver)) != value:
            found[pid] = value
    return found


def _mark_of(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    prefix = f"{MARK_ENV}=".encode()
    return next((v[len(prefix):].decode(errors="replace") for v in environ.split(b"\0") if v.startswith(prefix)),
                None)


def _zombie(pid: int) -> bool:
    """Dead, not yet reaped by its parent (this driver, for the processes Ray started)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _identity(pid: int) -> str | None:
    """'<pid>:<start time in clock ticks since boot>': a pid alone may have been reused by another process."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return f"{pid}:{stat.rpartition(')')[2].split()[19]}"  # field 22 of proc(5), counted after the name


def _signal(pid: int, value: str, sig: signal.Signals) -> None:
    if _mark_of(pid) == value:  # still the same process (not a reused pid)
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _name(pid: int) -> str:
    """The name Ray gives it (e.g. 'ray::DashboardAgent', its command line), else the executable's."""
    try:
        args = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        return Path(args[0].decode(errors="replace").split()[0]).name if args[0].strip() else "?"
    except (OSError, IndexError):
        return "?"
