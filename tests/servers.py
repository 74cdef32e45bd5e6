"""What tests that start real processes share: free loopback ports, polling, and a real `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
