"""What tests that start real processes share: free loopback ports, polling, and a real `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` different loopback ports free now (all held open while chosen, so none is picked twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def marked(key: str, value: str) -> list[psutil.Process]:
    """Processes whose environment holds `key=value`: everything a test started with that mark, and all their
    descendants (Ray's daemons, agents, workers and job drivers inherit the environment), re-parented or not."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and p.environ().get(key) == value:
                found.append(p)
    return found


def stop_marked(key: str, value: str, grace: float = 5.0) -> list[str]:
    """SIGTERM every process marked `key=value`, SIGKILL what is still alive after `grace` seconds (Ray's dashboard
    agents ignore SIGTERM); returns what had to be killed, as 'pid name'."""
    procs = marked(key, value)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    killed = []
    for p in {p.pid: p for p in alive + marked(key, value)}.values():  # and any started meanwhile
        with contextlib.suppress(psutil.Error):
            name = p.name()
            p.kill()
            killed.append(f"{p.pid} {name}")
    return killed


def answers(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def wait_for(predicate, timeout: float, what: str, step: float = 0.3):
    """`predicate()`'s first truthy value, polled every `step` seconds; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def mlflow_server(root: Path, port: int, env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:`port` (sqlite under `root`, artifacts served from `root/artifacts`), in
    its own process group; `wait`: return once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=(env or dict(os.environ)) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    if wait:
        wait_for(lambda: answers(port), 90, "the MLflow server to answer")
    return proc
