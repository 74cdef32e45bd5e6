"""`mte tune-tau`: tiny real searches (local Ray, 2 CPUs; sqlite MLflow), the recorded best τ read back as
`--tau-from-tuning` does, and bad input as one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from mte.cli import app
from mte.errors import MteError
from mte.results import SeedResult
from tracking.tau import tuned_tau

# 64 generated training pairs, a quarter of them held out: 48 trained on, 16 scored. One IMP round (+ ticket).
TINY = ["--task", "mrpc", "--train-limit", "64", "--eval-limit", "16", "--epochs", "1", "--max-length", "48",
        "--batch-size", "16", "--rounds", "1", "--seeds-per-sample", "2", "--holdout-fraction", "0.25",
        "--cpus-per-trial", "1", "--max-concurrent", "2", "--max-failures", "0", "--tau-min", "1e-5",
        "--tau-max", "1e-1"]


@dataclass
class Tuning:
    uri: str
    client: MlflowClient
    experiment_id: str
    store: Path
    report_dir: Path
    output: str

    def parent(self):
        (run,) = self.client.search_runs([self.experiment_id], "tags.`mte.kind` = 'tune-tau'")
        return run

    def samples(self) -> list:
        return self.client.search_runs([self.experiment_id], "tags.`mte.kind` = 'tau-sample'")


def tune(tmp: Path, glue: Path, *args: str) -> Tuning:
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["tune-tau", *TINY, "--data-dir", str(glue), "--out", str(tmp / "store"),
                                      "--tracking-uri", uri, "--experiment", "tau", "--report-dir",
                                      str(tmp / "report"), *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    client = MlflowClient(uri)
    return Tuning(uri, client, client.get_experiment_by_name("tau").experiment_id, tmp / "store", tmp / "report",
                  result.output)


@pytest.fixture(scope="module")
def random_lt(ray_local, generated_glue, tmp_path_factory) -> Tuning:
    return tune(tmp_path_factory.mktemp("tau-random"), generated_glue, "--method", "random-lt", "--search", "optuna",
                "--num-samples", "3")


def test_every_sample_is_a_nested_run_with_per_round_objective(random_lt):
    parent = random_lt.parent()
    assert parent.info.status == "FINISHED"
    tags, params = parent.data.tags, parent.data.params
    assert (tags["task"], tags["model"], tags["method"]) == ("mrpc", "minilm", "random-lt")
    assert (tags["tune_on"], tags["objective"], params["search"], params["seeds_per_sample"]) == (
        "train-holdout", "ensemble", "optuna", "2")
    assert params["tau_min"] == "1e-05" and params["tau_max"] == "0.1" and params["milestones"] == "2"
    samples = random_lt.samples()
    assert len(samples) == 3
    for run in samples:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert 1e-5 <= float(run.data.params["tau"]) <= 1e-1
        history = random_lt.client.get_metric_history(run.info.run_id, "objective")
        sparsity = random_lt.client.get_metric_history(run.info.run_id, "sparsity")
        if run.info.status == "FINISHED":  # round 0 (dense) and the ticket (30% pruned)
            assert [m.step for m in history] == [0, 1]
            assert [round(m.value, 3) for m in sorted(sparsity, key=lambda m: m.step)] == [0.0, 0.3]
            assert run.data.metrics["final_objective"] == history[-1].value
        else:  # stopped by ASHA after round 0
            assert run.info.status == "KILLED" and run.data.tags["stopped_at_step"] == "0"
            assert [m.step for m in history] == [0] and "final_objective" not in run.data.metrics


def test_recorded_best_tau_is_the_best_finished_sample_and_tau_best_resolves_to_it(random_lt):
    parent = random_lt.parent()
    finished = [r for r in random_lt.samples() if r.info.status == "FINISHED"]
    top = max(r.data.metrics["final_objective"] for r in finished)
    best = min((r for r in finished if r.data.metrics["final_objective"] == top),
               key=lambda r: float(r.data.params["tau"]))  # ties: the smaller τ
    tags = parent.data.tags
    assert float(tags["best_tau"]) == float(best.data.params["tau"])
    assert tags["best_run_id"] == best.info.run_id and float(tags["best_objective"]) == pytest.approx(top)
    assert parent.data.params["best_tau"] == tags["best_tau"]
    assert f"best τ = {float(tags['best_tau']):.4g}" in random_lt.output

    (found,) = tuned_tau(random_lt.client, "mrpc", "minilm", ("random-lt",))
    assert (found.tau, found.run_id) == (float(best.data.params["tau"]), parent.info.run_id)
    (swept,) = tuned_tau(random_lt.client, "mrpc", "minilm", ("baseline", "random-lt"))
    assert swept.tau == found.tau and parent.info.run_id in swept.description
    assert "train-holdout" in swept.description and (swept.task, swept.tune_on) == ("mrpc", "train-holdout")
    with pytest.raises(MteError, match="no finished `mte tune-tau` for task mrpc, model minilm, method active-lt"):
        tuned_tau(random_lt.client, "mrpc", "minilm", ("active-lt",))
    with pytest.raises(MteError, match="method active-lt"):
        tuned_tau(random_lt.client, "mrpc", "minilm", ("random-lt", "active-lt"))


def test_plot_is_logged_and_samples_were_scored_on_the_train_holdout(random_lt):
    parent = random_lt.parent()
    (png,) = random_lt.report_dir.glob("tune-tau/*.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert [a.path for a in random_lt.client.list_artifacts(parent.info.run_id)] == [png.name]
    results = [SeedResult.load(p) for p in (random_lt.store / "runs").iterdir()]
    assert results and all(r.spec.data.holdout == 0.25 and r.dev_labels.shape == (16,) for r in results)
    assert all(r.test_logits is None for r in results)  # dev and test were never scored


def test_active_lt_on_dev_runs_seeds_in_order_and_is_labelled(ray_local, generated_glue, tmp_path):
    t = tune(tmp_path, generated_glue, "--method", "active-lt", "--search", "hyperopt", "--num-samples", "1",
             "--tune-on", "dev", "--no-early-stop")
    parent = t.parent()
    assert parent.data.tags["tune_on"] == "dev" and parent.info.run_name.endswith("-DEV")
    assert "DEV" in parent.data.tags["mlflow.note.content"] and parent.data.params["search"] == "hyperopt"
    (run,) = t.samples()
    assert run.info.status == "FINISHED"
    scored = t.client.get_metric_history(run.info.run_id, "seeds_scored")  # seed 1's round 0 and ticket,
    assert [(m.step, m.value) for m in scored] == [(0, 2.0), (1, 2.0)]  # each scored with seed 0's same round
    results = sorted((SeedResult.load(p) for p in (t.store / "runs").iterdir()), key=lambda r: r.spec.seed)
    assert [r.spec.seed for r in results] == [0, 1]
    assert all(r.spec.data.holdout == 0.0 and r.dev_labels.shape == (16,) for r in results)
    assert results[0].prior_masks == [] and results[1].prior_masks == [results[0].mask.digest()]
    assert not any(f.regularised for f in results[0].rounds)  # τ cannot act on seed 0
    (found,) = tuned_tau(t.client, "mrpc", "minilm", ("active-lt",))
    assert (found.tau, found.run_id) == (float(run.data.params["tau"]), parent.info.run_id)


BAD = {
    "min above max": (["--tau-min", "1e-2", "--tau-max", "1e-3"], "must be smaller than --tau-max"),
    "zero bound": (["--tau-min", "0"], "--tau-min must be a positive number"),
    "unknown search": (["--search", "bayes"], "unknown search 'bayes'"),
    "missing library": (["--search", "optuna"], "--search optuna needs the 'optuna' package"),
}


def test_bad_input_is_one_line_exit_2_and_leaves_no_tracking_store(tmp_path):
    """All cases at once (separate processes). The missing library is a real failing import: a package of that
    name that raises ImportError shadows the installed one."""
    shim = tmp_path / "shim" / "optuna"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("No module named optuna")\n')
    procs = {}
    for name, (args, _) in BAD.items():
        env = os.environ | ({"PYTHONPATH": str(shim.parent)} if name == "missing library" else {})
        cmd = [sys.executable, "-m", "mte", "tune-tau", "--method", "random-lt", *args]
        procs[name] = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, out, err)
        assert len(lines) == 1 and lines[0].startswith("error:") and BAD[name][1] in lines[0], (name, err)
    assert not (tmp_path / "mlflow.db").exists()


def test_sweep_tau_from_tuning_without_a_recorded_search_is_one_line(tmp_path, generated_glue):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mte", "sweep", "--methods", "random-lt", "--seeds", "1", "--tau-from-tuning", "mrpc",
         "--data-dir", str(generated_glue), "--out", str(tmp_path / "s"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "tune-tau" in lines[0], result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # checked before a database (or Ray) was started


def dry_run(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mte", "sweep", "--dry-run", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ | {"COLUMNS": "300", "HF_HUB_OFFLINE": "1"})


def test_dry_run_says_which_tau_applies_and_how_much_work_the_sweep_is(random_lt, generated_glue, tmp_path):
    """The recorded tuning resolves τ for the method it tuned; a method it did not tune is reported as missing
    (the sweep would stop there); nothing is created by asking."""
    tau = float(random_lt.parent().data.tags["best_tau"])
    common = ["--tau-from-tuning", "mrpc", "--seeds", "2", "--rounds", "1", "--data-dir", str(generated_glue),
              "--out", str(tmp_path / "store"), "--tracking-uri", random_lt.uri]
    procs = {"tuned": dry_run(tmp_path, "--methods", "baseline,base-lt,random-lt", *common),
             "not tuned": dry_run(tmp_path, "--methods", "random-lt,active-lt", *common),
             "paper": dry_run(tmp_path, "--preset", "paper", "--model", "minilm", "--data-dir", str(generated_glue))}
    out = {}
    for name, proc in procs.items():
        stdout, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err)
        out[name] = stdout
    tau_row = next(ln for ln in out["tuned"].splitlines() if ln.split()[:1] == ["--tau"])
    assert "not used: --tau-from-tuning mrpc sets τ" in tau_row
    assert "τ: from --tau-from-tuning mrpc (command line), not --tau:" in out["tuned"]
    assert f"random-lt: τ = {tau:.4g} from tune-tau run {random_lt.parent().info.run_id}" in out["tuned"]
    # 2 seeds: BASELINE 2 fine-tunes, BASE-LT and RANDOM-LT 2 × (1 round + 1) each; BASE-LT's round 0 is BASELINE
    assert "work: 6 trials, for 6 (method, seed) units; 8 distinct fine-tunes, 10 counted per method" in out["tuned"]
    assert "recorded: 0 of 6 units finished in this sweep's MLflow runs; 6 trials left to run" in out["tuned"]
    assert "none recorded yet (no finished `mte tune-tau` for task mrpc, model minilm, method active-lt;" \
        in out["not tuned"]
    assert "recorded: not known until τ is" in out["not tuned"]
    # the paper: 20 seeds of 5 methods, 3 rounds; ACTIVE-LT is one chain trial; 20 × (1 + 1 + 3 × 4) fine-tunes,
    # of which BASELINE's 20 are BASE-LT's round 0 and ACTIVE-LT seed 0's 4 are BASE-LT seed 0's
    assert "work: 81 trials: 1 ACTIVE-LT chain(s) of 20 seeds and 80 single-seed trials, for 100 (method, seed) " \
           "units; 256 distinct fine-tunes, 280 counted per method" in out["paper"]
    assert "τ: from --tau-from-tuning mrpc (preset paper), not --tau: none recorded yet" in out["paper"]
    assert not any(tmp_path.iterdir())
    assert len(random_lt.client.search_experiments()) == 2  # the default one and "tau": no sweep's experiment


TAU_PLUGIN = '''from mte.methods import Method, Seed, Step, imp, register


@register
class FirstRoundRandomLT(Method):
    """RANDOM-LT's regulariser in the first IMP round only."""

    name = "first-random-lt"
    reads = ("sparsity", "rounds", "rewind_head", "tau")
    prunes = uses_tau = True

    def fine_tunes(self, seed: Seed) -> list[Step]:
        hp = seed.hp
        steps = imp(seed, {"first-random": seed.seed, "tau": hp.tau}, seed.regulariser(hp.tau, "random"))
        return [steps[0], *(dataclasses.replace(s, reg=None, reg_id=None) for s in steps[1:])]
'''


def test_a_plugin_method_that_uses_tau_is_tuned_in_ray_trials(ray_local, generated_glue, tmp_path, clean_registry):
    """`mte tune-tau` offers a plugin's method that says it uses τ; the Ray trials, which never saw the file, load
    it from the text the driver sends, and every sample trains it."""
    from mte import plugins

    path = tmp_path / "first_random.py"
    path.write_text("import dataclasses\n\n" + TAU_PLUGIN)
    plugins.load([str(path)])
    tuned = tune(tmp_path, generated_glue, "--method", "first-random-lt", "--search", "grid", "--num-samples", "2")
    parent = tuned.parent()
    assert parent.info.status == "FINISHED" and parent.data.tags["method"] == "first-random-lt"
    samples = tuned.samples()
    assert len(samples) == 2 and all(s.info.status == "FINISHED" for s in samples)
    assert all("objective" in s.data.metrics for s in samples)
