"""A tiny real sweep (local Ray, 2 CPUs; sqlite MLflow) read back through the MLflow client, then resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
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
        assert 0.0 <= r.data.metrics["accuracy"] <= 1.0
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
    parent = tiny.parent()
    assert "report/report.md" in {a.path for a in tiny.client.list_artifacts(parent.info.run_id, "report")}
    metrics = parent.data.metrics
    assert {"baseline/accuracy_single", "active-lt/accuracy_ensemble", "active-lt/accuracy_p_vs_baseline",
            "active-lt/accuracy_gain_vs_baseline", "active-lt/sparsity"} <= set(metrics)
    assert "active-lt/accuracy_ttest_p_vs_baseline" not in metrics  # one combination each: undefined, left out
    assert metrics["active-lt/sparsity"] == pytest.approx(0.3, abs=1e-3)
    tags = parent.data.tags
    assert json.loads(tags["tau_source"]) == {"kind": "given", "tau": 1e-4} and tags["preset"] == "none"
    assert set(json.loads(tags["versions"])) == {"mte", "torch", "transformers", "ray", "mlflow", "python"}
    md = (out / "report.md").read_text()
    assert "- τ: τ = 0.0001 (given, not tuned)" in md and "- model: minilm" in md and "versions: mte 0.1.0" in md
