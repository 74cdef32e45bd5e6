"""A tiny real sweep (local Ray, 2 CPUs; sqlite MLflow) read back through the MLflow client, then resumed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from mte.cli import app
from mte.masks import Mask
from mte.results import SeedResult
from mte.store import Store
from tracking.load import load_sweep, log_report

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16",
        "--rounds", "1"]
METHODS = "baseline,active-lt"
ARTIFACTS = {"result.json", "mask.safetensors", "dev_logits.npy", "dev_labels.npy", "test_logits.npy",
             "MANIFEST.json"}


@dataclass
class Sweep:
    uri: str
    root: Path
    store: Path
    glue: Path
    client: MlflowClient
    experiment_id: str
    output: str

    def run(self, *args: str):
        return run_sweep(self.uri, self.store, self.glue, "tiny", *args)

    def trials(self) -> list:
        runs = self.client.search_runs([self.experiment_id], "tags.role = 'trial'")
        return [r for r in runs if int(r.data.tags["seed"]) < 2]  # the resume test adds seed 2

    def parent(self):
        (parent,) = self.client.search_runs([self.experiment_id], "tags.role = 'sweep'")
        return parent


def run_sweep(uri: str, store: Path, glue: Path, experiment: str, *args: str):
    return CliRunner().invoke(app, ["sweep", "--methods", METHODS, *TINY, "--data-dir", str(glue), "--out", str(store),
                                    "--tracking-uri", uri, "--experiment", experiment, "--no-report", *args])


@pytest.fixture(scope="module")
def tiny(ray_local, sweep_store, glue_dir, tmp_path_factory) -> Sweep:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = run_sweep(uri, sweep_store, glue_dir, "tiny", "--seeds", "2")
    assert result.exit_code == 0, result.output + repr(result.exception)
    client = MlflowClient(uri)
    return Sweep(uri, root, sweep_store, glue_dir, client, client.get_experiment_by_name("tiny").experiment_id,
                 result.output)


def test_one_parent_and_one_finished_nested_run_per_method_and_seed(tiny):
    parent = tiny.parent()
    assert parent.info.status == "FINISHED"
    trials = tiny.trials()
    assert sorted((r.data.tags["method"], r.data.tags["seed"]) for r in trials) == [
        ("active-lt", "0"), ("active-lt", "1"), ("baseline", "0"), ("baseline", "1")]
    for r in trials:
        tags, params = r.data.tags, r.data.params
        assert r.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["task"] == "mrpc" and tags["model"] == "minilm" and len(tags["hash"]) == 16
        assert params["method"] == tags["method"] and params["seed"] == tags["seed"] and params["lr"] == "0.0001"
        assert 0.0 <= r.data.metrics["dev_accuracy"] <= 1.0 and "accuracy" not in r.data.metrics
    ticket = next(r for r in trials if r.data.tags["method"] == "active-lt")
    history = tiny.client.get_metric_history(ticket.info.run_id, "round/sparsity")
    assert [m.step for m in history] == [0, 1] and history[1].value == pytest.approx(0.3, abs=1e-3)


def test_artifacts_load_and_match_the_store(tiny, tmp_path):
    exp = tiny.client.get_experiment(tiny.experiment_id)
    assert exp.artifact_location == (tiny.root / "mlartifacts" / "tiny").as_uri()  # explicit, not Ray's tmp
    store = Store(tiny.store)
    for r in tiny.trials():
        run_id = r.info.run_id
        assert {a.path for a in tiny.client.list_artifacts(run_id)} == ARTIFACTS
        folder = Path(tiny.client.download_artifacts(run_id, "", str(tmp_path / run_id)))
        mask = Mask.load(folder / "mask.safetensors")
        expected = 0.3 if r.data.tags["method"] == "active-lt" else 0.0
        assert mask.sparsity == pytest.approx(expected, abs=1e-3)
        logits = np.load(folder / "dev_logits.npy", allow_pickle=False)
        labels = np.load(folder / "dev_labels.npy", allow_pickle=False)
        assert logits.shape == (8, 2) and labels.shape == (8,)
        config = json.loads((folder / "result.json").read_text())
        assert config["key"] == r.data.tags["result_key"] and config["spec"]["seed"] == int(r.data.tags["seed"])
        stored = SeedResult.load(store.path("runs", config["key"]))
        np.testing.assert_array_equal(stored.dev_logits, logits)


def test_load_sweep_rebuilds_seed_results_and_log_report_attaches_to_parent(tiny, tmp_path):
    results = [r for r in load_sweep("tiny", tiny.uri) if r.spec.seed < 2]
    assert [(r.spec.method.method, r.spec.seed) for r in results] == [
        ("baseline", 0), ("baseline", 1), ("active-lt", 0), ("active-lt", 1)]
    assert all(r.dev_logits.shape == (8, 2) and r.test_logits is not None for r in results)
    assert results[3].prior_masks == [results[2].mask.digest()]  # active-lt seed 1 saw seed 0's mask
    (tmp_path / "report.md").write_text("# report\n")
    parent = log_report("tiny", tiny.uri, tmp_path)
    assert parent == tiny.parent().info.run_id
    assert [a.path for a in tiny.client.list_artifacts(parent, "report")] == ["report/report.md"]


def test_rerun_runs_nothing_and_more_seeds_run_only_the_new_trials(tiny):
    before = {r.info.run_id for r in tiny.client.search_runs([tiny.experiment_id], "tags.role = 'trial'")}
    again = tiny.run("--seeds", "2")
    assert again.exit_code == 0, again.output
    assert "0 to run" in again.output
    more = tiny.run("--seeds", "3")
    assert more.exit_code == 0, more.output
    assert "4 already recorded, 2 to run" in more.output
    runs = tiny.client.search_runs([tiny.experiment_id], "tags.role = 'trial'")
    keys = sorted((r.data.tags["method"], int(r.data.tags["seed"])) for r in runs)
    assert keys == sorted((m, s) for m in ("baseline", "active-lt") for s in range(3))  # no duplicates
    new = {r.info.run_id for r in runs} - before
    assert sorted(int(r.data.tags["seed"]) for r in runs if r.info.run_id in new) == [2, 2]
    assert len(tiny.client.search_runs([tiny.experiment_id], "tags.role = 'sweep'")) == 1
    assert tiny.parent().info.status == "FINISHED"
    resumed = CliRunner().invoke(app, ["sweep", "--resume", "--tracking-uri", tiny.uri, "--experiment", "tiny",
                                       "--no-report"])  # every other option comes from the recorded sweep
    assert resumed.exit_code == 0, resumed.output
    assert "6 already recorded, 0 to run" in resumed.output


def test_mte_report_reads_the_sweep_back_and_writes_every_table(tiny, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--experiment", "tiny", "--tracking-uri", tiny.uri, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for name in ("report.md", "report.html", "table1_ensembles.csv", "table2_diversity.csv", "mask_overlap.csv",
                 "fig3_gain_vs_members.png", "fig4_mask_iou.png"):
        assert (out / name).stat().st_size > 0, name
    import pandas as pd

    table1 = pd.read_csv(out / "table1_ensembles.csv")
    assert set(table1.iloc[:, 0].str.lower()) >= {"baseline", "active-lt"}
    # the removed weights as a share of all of MiniLM's parameters (22,713,986 with a 2-class head), beside their
    # share of its 10,764,288 prunable ones
    ticket_row = table1.set_index(table1.columns[0]).loc["active-lt"]
    assert ticket_row["sparsity_of_all"] == pytest.approx(ticket_row["sparsity"] * 10_764_288 / 22_713_986, rel=1e-3)
    assert "30% (14% of all)" in (out / "report.md").read_text()
    parent = tiny.parent()
    assert "report/report.md" in {a.path for a in tiny.client.list_artifacts(parent.info.run_id, "report")}
    metrics = parent.data.metrics
    assert {"baseline/accuracy_single", "active-lt/accuracy_ensemble", "active-lt/accuracy_p_vs_baseline",
            "active-lt/accuracy_gain_vs_baseline", "active-lt/sparsity"} <= set(metrics)
    assert "active-lt/accuracy_ttest_p_vs_baseline" not in metrics  # one combination each: undefined, left out
    assert metrics["active-lt/sparsity"] == pytest.approx(0.3, abs=1e-3)
    tags = parent.data.tags
    assert json.loads(tags["tau_source"]) == {"kind": "given", "tau": 1e-4} and tags["preset"] == "none"
    assert {f"version.{p}" for p in ("mte", "torch", "transformers", "ray", "mlflow", "python")} <= set(tags)
    md = (out / "report.md").read_text()
    assert "- τ: τ = 0.0001 (given, not tuned)" in md and "- model: minilm" in md and "versions: mte 0.1.0" in md


def test_runs_are_a_lab_notebook_provenance_params_curves_and_data(tiny, tmp_path):
    trials = {(r.data.tags["method"], r.data.tags["seed"]): r for r in tiny.trials()}
    base, ticket = trials[("baseline", "0")], trials[("active-lt", "1")]
    for run in (base, ticket, tiny.parent()):
        tags = run.data.tags
        assert tags["mlflow.source.name"].startswith("mte sweep") and tags["mlflow.user"]
        assert tags["version.torch"] == torch.__version__ and "version.mlflow" in tags
        names = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert {"MRPC-train", "MRPC-dev"} <= set(names), names
        assert names["MRPC-train"].dataset.digest == tags["data_fingerprint"]
        assert json.loads(names["MRPC-dev"].dataset.profile) == {"examples": 8}
    # Params that mean something for the run's method; the target sparsity is a param, the measured one a metric.
    assert not {"tau", "target_sparsity", "rounds", "bagging_fraction", "sparsity"} & set(base.data.params)
    p = ticket.data.params
    assert (p["tau"], p["target_sparsity"], p["rounds"], p["active_chain"]) == ("0.0001", "0.3", "1", "all")
    assert ticket.data.metrics["sparsity"] == pytest.approx(0.3, abs=1e-3)
    # One curve across the IMP rounds: the round and the ticket, 1 epoch each; train loss every 10 steps.
    curve = tiny.client.get_metric_history(ticket.info.run_id, "dev_accuracy")
    assert sorted(m.step for m in curve) == [1, 2] and curve[-1].value == ticket.data.metrics["dev_accuracy"]
    assert tiny.client.get_metric_history(ticket.info.run_id, "train_loss_steps")
    assert base.data.tags["reused"] in ("true", "false")
    threads = json.loads(base.data.tags["node.resources"])["CPU"]  # one torch thread per CPU Ray assigned
    assert base.data.tags["ran_on"] == f"cpu, {threads:g} thread(s), torch {torch.__version__}"
    parent = tiny.parent().info.run_id
    (req,) = tiny.client.list_artifacts(parent, "environment")
    text = Path(tiny.client.download_artifacts(parent, req.path, str(tmp_path))).read_text()
    assert f"torch=={torch.__version__}" in text and "mlflow==" in text


def test_pandas_api_frames_a_sweep_and_its_report(tiny):
    from tracking.load import report_frames, sweep_frame

    frame = sweep_frame("tiny", tiny.uri)
    assert {"run_id", "run_name", "status", "method", "seed", "params.lr", "metrics.dev_accuracy",
            "tags.hash"} <= set(frame.columns)
    pairs = [(m, s) for m, s in zip(frame.method, frame.seed, strict=True) if s < 2]
    assert pairs == [("baseline", 0), ("baseline", 1), ("active-lt", 0), ("active-lt", 1)]
    assert (frame.status == "FINISHED").all() and frame.run_id.is_unique
    tables = report_frames("tiny", tiny.uri)
    assert set(tables) == {"table1", "tests", "table2", "overlap", "curves", "calibration", "reliability"}
    assert list(tables["calibration"].method) == ["baseline", "active-lt"] and not tables["reliability"].empty
    assert list(tables["table1"].method) == ["baseline", "active-lt"]
    assert "accuracy_p_vs_baseline" in tables["table1"] and set(tables["tests"].reference) == {"baseline"}


def test_the_mlflow_ui_lands_on_the_runs_and_shows_the_sweep_in_a_real_browser(tiny, tmp_path):
    """`mte ui` prints links; headless Chromium follows them. The runs view lists the sweep's parent and its child
    runs by name (once the parent is expanded, as a click does); the parent's page shows its sweep-level metrics."""
    import re
    import socket
    import subprocess
    import sys
    import time

    import browser

    if not browser.available():
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (scripts/test.sh installs it)")
        pytest.skip("no chromium here (apt-get install chromium)")
    report = CliRunner().invoke(app, ["report", "--experiment", "tiny", "--tracking-uri", tiny.uri, "--out",
                                      str(tmp_path / "report")])  # the parent's sweep-level metrics
    assert report.exit_code == 0, report.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "mte", "ui", "--tracking-uri", tiny.uri, "--experiment", "tiny",
                           "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=os.environ | {"COLUMNS": "300"}, start_new_session=True)
    try:
        lines = [ui.stdout.readline() for _ in range(3)]
        runs_url = re.search(r"(http://\S+/runs\?workflowType=machine_learning)", lines[1]).group(1)
        parent_url = re.search(r"(http://\S+)", lines[2]).group(1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.5)
        parent = tiny.parent()
        children = sorted(r.info.run_name for r in tiny.trials())
        quiet = {"mlflow.assistant.panelOpen_v1": "false", "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}
        expanded = quiet | {f'MLflowLocalStorage-1.1-ExperimentPage-["{tiny.experiment_id}"]-ReactComponentState':
                            json.dumps({"runsExpanded": {parent.info.run_id: True}})}
        runs = browser.render(runs_url, [parent.info.run_name, *children], tmp_path / "runs_view.png", expanded)
        print(f"\nruns view ({runs.seconds:.1f} s): {runs.url}\n  screenshot {runs.screenshot}")
        assert parent.info.run_name in runs.text and all(c in runs.text for c in children), runs.text[:2000]
        assert "Overview" not in runs.text.split(parent.info.run_name)[0][-200:]  # not the GenAI landing page
        page = browser.render(parent_url, ["baseline/accuracy_single"], tmp_path / "parent_run.png", quiet,
                              size=(1600, 2600))
        print(f"parent run page ({page.seconds:.1f} s): {page.url}\n  screenshot {page.screenshot}")
        for metric in ("baseline/accuracy_single", "active-lt/accuracy_ensemble", "active-lt/sparsity"):
            assert metric in page.text, (metric, page.text[:3000])
        assert runs.screenshot.read_bytes()[:4] == b"\x89PNG" and page.screenshot.stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_system_metrics_sample_a_trial_while_it_trains(ray_local, sweep_store, glue_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["sweep", "--methods", "bagging", "--seeds", "1", "--train-limit", "64",
                                      "--eval-limit", "8", "--epochs", "2", "--max-length", "48", "--batch-size", "8",
                                      "--data-dir", str(glue_dir), "--out", str(tmp_path / "store"), "--tracking-uri",
                                      uri, "--experiment", "sys", "--no-report", "--system-metrics"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sys").experiment_id], "tags.role = 'trial'")
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    assert run.info.status == "FINISHED" and "dev_accuracy" in run.data.metrics
