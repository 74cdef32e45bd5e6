"""Ray's GPU path on a machine without one: a local Ray that declares a GPU (`--num-gpus`) packs fractional
`--gpus-per-trial` trials onto it, and a trial given a GPU that CUDA cannot see fails with one line.

Each case starts its own Ray in a subprocess: the session's shared local Ray (conftest) declares no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_sweep_local import TINY

REPO = Path(__file__).resolve().parents[1]

# Two probe trials through the sweep's own cluster start-up, resource request and quiet Tune fit. Each probe
# announces itself with a file, waits for the other's (up to `wait` s), lingers so the other can see it too, and
# reports its time window and placement (`sweeps.trial.node_info`, as recorded on a trial's MLflow run).
PROBE = """
import json, sys, time
from pathlib import Path
from sweeps.cluster import RayOptions
from sweeps.session import quiet_fit, ray_cluster, run_config

root, cases = Path(sys.argv[1]), json.loads(sys.argv[2])  # GPUs per trial -> seconds a probe waits for the other

def probe(config):
    from ray import tune
    from sweeps.trial import node_info
    folder, me = Path(config["folder"]), config["name"]
    other = folder / ("b" if me == "a" else "a")
    start = time.time()
    (folder / me).touch()
    while not other.exists() and time.time() < start + config["wait"]:
        time.sleep(0.05)
    saw = other.exists()
    if saw:
        time.sleep(1.0)
    end = time.time()
    (folder / me).unlink()
    tune.report({"name": me, "start": start, "end": end, "saw": saw, **node_info(1.0)})

out = {}
with ray_cluster(RayOptions(num_cpus=2, num_gpus=1, dashboard=False).validate()):
    from ray import tune  # imported only now, as the sweep does: it reads mte's auth token settings

    for gpus_per_trial, wait in cases.items():
        o = RayOptions(num_cpus=2, num_gpus=1, gpus_per_trial=float(gpus_per_trial), dashboard=False).validate()
        folder = root / f"flags-{gpus_per_trial}"
        folder.mkdir()
        tuner = tune.Tuner(tune.with_resources(probe, o.trial_resources),
                           param_space={"folder": str(folder), "wait": wait, "name": tune.grid_search(["a", "b"])},
                           run_config=run_config(f"probe-{gpus_per_trial}", str(root / "tune"), [], 0))
        out[gpus_per_trial] = {r.metrics["name"]: r.metrics for r in quiet_fit(tuner)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """GPUs per trial ("0.5", "1") -> probe name -> what it reported; one Ray start for both."""
    root = tmp_path_factory.mktemp("gpu-probe")
    cases = json.dumps({"0.5": 120, "1": 2})  # with 1 GPU each, a probe waits 2 s for a partner that must not come
    proc = subprocess.run([sys.executable, "-c", PROBE, str(root), cases], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_half_a_gpu_each_runs_two_trials_at_once_on_the_same_declared_gpu(probed):
    trials = probed["0.5"]
    a, b = trials["a"], trials["b"]
    assert a["saw"] and b["saw"], trials  # each found the other running
    assert a["start"] < b["end"] and b["start"] < a["end"]
    assert a["node.gpus"] == b["node.gpus"] == "0"
    assert json.loads(a["node.resources"])["GPU"] == json.loads(b["node.resources"])["GPU"] == 0.5


def test_a_whole_gpu_each_runs_the_trials_one_at_a_time(probed):
    trials = probed["1"]
    a, b = trials["a"], trials["b"]
    assert not a["saw"] and not b["saw"], trials
    first, second = sorted((a, b), key=lambda t: t["start"])
    assert first["end"] <= second["start"]
    assert a["node.gpus"] == b["node.gpus"] == "0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose torch sees no CUDA device")
def test_a_trial_given_a_gpu_cuda_cannot_see_fails_with_one_line(glue_dir, tmp_path):
    cmd = [sys.executable, "-m", "mte", "sweep", "--methods", "baseline", "--seeds", "1", *TINY, "--data-dir",
           str(glue_dir), "--out", str(tmp_path / "store"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--num-gpus", "1", "--gpus-per-trial", "1", "--max-failures", "0", "--no-report", "--no-dashboard"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ | {"COLUMNS": "400"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("failed trial baseline-s0: ")]
    assert len(lines) == 1, proc.stderr
    assert "Ray gave this trial GPU 0 on" in lines[0] and "torch sees no CUDA device there" in lines[0], lines
    assert "MteError" not in lines[0]
    assert "--num-gpus 1: torch sees 0 GPU(s) here" in proc.stderr  # warned before anything started
    assert not list((tmp_path / "store").glob("runs/*/result.json"))  # nothing trained on CPUs under a GPU's name


@pytest.mark.parametrize(("args", "message"), [
    (["--num-gpus", "1", "--gpus-per-trial", "2"], "--num-gpus 1 declares fewer GPUs than one trial asks for"),
    (["--num-gpus", "-1"], "--num-gpus must be >= 0"),
    (["--num-gpus", "1", "--ray-address", "127.0.0.1:1"], "a joined cluster's nodes declare their own"),
])
def test_a_bad_gpu_declaration_is_refused_before_anything_starts(args, message, tmp_path):
    from typer.testing import CliRunner

    from mte.cli import app

    result = CliRunner().invoke(app, ["sweep", "--seeds", "1", *TINY, "--out", str(tmp_path / "store"),
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", *args])
    assert message in str(result.exception), result.output
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "store").exists()
