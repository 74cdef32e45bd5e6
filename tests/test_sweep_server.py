"""The same tiny sweep against a real `mlflow server` on 127.0.0.1, and `mte ui` serving a sqlite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from servers import free_port
from test_sweep_local import ARTIFACTS, run_sweep

from mte.masks import Mask
from tracking.load import load_sweep


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy in {timeout} s")


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start a server in its own process group (it forks workers), so the test can stop all of it."""
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job workers: faster start
    with open(log, "w") as f:  # a file, not a pipe: a full pipe would block the server mid-test
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A real `mlflow server` (empty store) and `mte ui` (on a store with one experiment), started together
    because each takes tens of seconds to come up on a small machine."""
    root = tmp_path_factory.mktemp("server")
    ui_uri = f"sqlite:///{root / 'ui.db'}"
    MlflowClient(ui_uri).create_experiment("ui-check")
    server_url, ui_url = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    procs = [
        (server_url, root / "server.log", launch(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", server_url.rsplit(":", 1)[1], "--workers", "1"], root / "server.log")),
        (ui_url, root / "ui.log", launch(
            [sys.executable, "-m", "mte", "ui", "--tracking-uri", ui_uri, "--port", ui_url.rsplit(":", 1)[1]],
            root / "ui.log")),
    ]
    try:
        for url, log, proc in procs:
            wait_healthy(url, proc, log)
        yield server_url, ui_url, root
    finally:
        for _, _, proc in procs:
            stop(proc)


def test_sweep_against_a_real_mlflow_server(ray_local, servers, sweep_store, glue_dir, tmp_path):
    url, _, root = servers
    result = run_sweep(url, sweep_store, glue_dir, "served", "--seeds", "2")
    assert result.exit_code == 0, result.output + repr(result.exception)
    client = MlflowClient(url)
    exp = client.get_experiment_by_name("served")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    trials = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    assert parent.info.status == "FINISHED" and len(trials) == 4
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for r in trials)
    run = trials[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == ARTIFACTS
    mask = Mask.load(client.download_artifacts(run.info.run_id, "mask.safetensors", str(tmp_path)))
    assert mask.total > 1_000_000
    assert any((root / "artifacts").rglob("mask.safetensors"))  # uploaded through the server's proxy
    assert len(load_sweep("served", url)) == 4


def test_mte_ui_serves_the_store_on_localhost(servers):
    _, ui_url, _ = servers
    assert "ui-check" in {e.name for e in MlflowClient(ui_url).search_experiments()}
