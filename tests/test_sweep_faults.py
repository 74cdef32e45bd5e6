"""Faults and bad input: a killed worker is retried, a trial that always fails is reported (exit 1), and bad
options are one line on stderr with exit 2 and no parent run marked FINISHED."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from mte.cli import app

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16",
        "--no-report"]


def test_killed_worker_is_retried_and_an_always_failing_trial_is_reported(ray_local, generated_glue, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("MTE_TEST_CRASH", "die:baseline:0,raise:bagging:0")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["sweep", "--methods", "baseline,bagging", "--seeds", "1", "--max-failures", "1",
                                      "--data-dir", str(generated_glue), "--out", str(tmp_path / "store"),
                                      "--tracking-uri", uri, "--experiment", "faults", *TINY])
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert (tmp_path / "store" / ".test-crash" / "die-baseline-0").exists()  # the first attempt did die
    assert "retry" in result.output and "baseline-s0" in result.output
    assert "bagging-s0" in result.output and "injected failure" in result.output
    assert "None" not in result.output  # every failure and retry says why
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("faults")
    trials = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    assert [(r.data.tags["method"], r.info.status) for r in trials] == [("baseline", "FINISHED")]
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    assert parent.info.status == "FAILED"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


BAD = {
    "unreachable tracking": (["--tracking-uri", f"http://127.0.0.1:{closed_port()}"], "unreachable"),
    "unknown method": (["--methods", "baseline,foo"], "unknown method 'foo'"),
    "zero seeds": (["--seeds", "0"], "--seeds must be >= 1"),
    "gpus without gpus": (["--gpus-per-trial", "1"], "no GPU is visible"),
}


def test_bad_input_is_one_line_and_leaves_no_finished_parent(generated_glue, tmp_path):
    """All cases run at once (separate processes), so the suite pays for one interpreter start-up."""
    cases = {k: v for k, v in BAD.items() if k != "gpus without gpus" or torch.cuda.device_count() == 0}
    procs = {}
    for name, (args, _) in cases.items():
        uri = f"sqlite:///{tmp_path / name.replace(' ', '-')}.db"
        cmd = [sys.executable, "-m", "mte", "sweep", "--seeds", "1", "--data-dir", str(generated_glue),
               "--out", str(tmp_path / "store"), "--tracking-uri", uri, *TINY, *args]
        procs[name] = (uri, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=os.environ | {"COLUMNS": "200"}))
    for name, (uri, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("error:") and cases[name][1] in lines[0], (name, err)
        if os.path.exists(uri[len("sqlite:///"):]):  # checks come before the store is even opened, but if not:
            client = MlflowClient(uri)
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            assert not [r for r in runs if r.info.status == "FINISHED"], name


@pytest.mark.parametrize("value", ["-1", "1.5"])
def test_bad_gpu_fraction_is_refused_before_anything_starts(value, generated_glue, tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--seeds", "1", "--gpus-per-trial", value, "--data-dir",
                                      str(generated_glue), "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", *TINY])
    assert "--gpus-per-trial must be" in str(result.exception)
    assert not (tmp_path / "x.db").exists()
