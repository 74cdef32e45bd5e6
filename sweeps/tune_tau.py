"""`mte tune-tau`: a Ray Tune search over the L1 coefficient τ of ACTIVE-LT or RANDOM-LT, recorded in MLflow.

One trial per τ sample runs K seeds (0..K−1) through the science core and reports an objective after every
IMP round, so the early-stopping scheduler (ASHA) can drop a poor τ before its tickets are trained:

- RANDOM-LT: seeds are independent; their `seed_rounds` generators are advanced together, one fine-tune each,
  and milestone r (r = 0..rounds; the last is the ticket) scores the K seeds' round-r outputs.
- ACTIVE-LT: seed i is regularised towards the final masks of seeds < i, so seeds run one after another.
  Seed 0 has no earlier masks and hence no regulariser: it is the same for every τ (run once, then reused
  from the store) and reports nothing. Milestones are the (seed i ≥ 1, round r) fine-tunes in order, scoring
  seeds 0..i at round r; the last one is the full K-seed ensemble of tickets.

Objective: the headline metric (`task.metrics[0]`) of the ensemble (mean softmax probabilities, as in
`mte.analysis.ensembles`) or the mean single score. It is measured on a seeded holdout of train
(`DataHparams.holdout`, dev untouched) unless `--tune-on dev`, which the MLflow runs say loudly.
Only samples that ran every milestone compete for the best τ; a stopped sample's objective is that of an
earlier round. MLflow layout: `tracking/tau.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mte.cli_options import (
    ARTIFACT_LOCATION_OPTION,
    DATA_DIR_OPTION,
    EXPERIMENT_OPTION,
    STORE_OPTION,
    TRACKING_URI_OPTION,
    hparam_options,
)
from mte.errors import MteError
from mte.hparams import (
    HPARAM_GROUPS,
    REGULARISED_METHODS,
    DataHparams,
    MethodHparams,
    ModelHparams,
    RunSpec,
    TrainHparams,
)
from sweeps.cluster import RayOptions

console = Console(stderr=True)
SEARCHES = {"optuna": "optuna", "hyperopt": "hyperopt", "random": None, "grid": None}  # name → library needed
OBJECTIVES = ("ensemble", "single")
TUNE_ON = ("train-holdout", "dev")
REDUCTION_FACTOR = 3  # ASHA keeps the best third of the samples at each rung


@dataclass
class TauOptions:
    spec: RunSpec  # method set, holdout set from tune_on, lr resolved; τ and seed are set per trial
    search: str = "optuna"
    num_samples: int = 8
    tau_min: float = 1e-6
    tau_max: float = 1e-2
    seeds: int = 3
    objective: str = "ensemble"
    tune_on: str = "train-holdout"
    early_stop: bool = True
    search_seed: int = 0
    data_dir: Path | None = None
    store: Path = Path("mte-store")
    experiment: str = "mte"
    tracking_uri: str | None = None
    artifact_location: str | None = None
    ray: RayOptions = field(default_factory=RayOptions)
    top: int = 5
    report_dir: Path = Path("mte-report")

    @property
    def milestones(self) -> int:
        """Objective reports per sample (ASHA's max_t)."""
        per_seed = self.spec.method.rounds + 1
        return per_seed * (self.seeds - 1 if self.spec.method.method == "active-lt" else 1)


@dataclass
class TuningOutcome:
    parent_run_id: str
    tracking_uri: str
    best_tau: float | None
    best_objective: float | None
    best_run_id: str | None
    finished: int
    stopped: int
    failed: int
    plot: Path | None
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


# ---- command ------------------------------------------------------------------------------------------

@hparam_options(*HPARAM_GROUPS, RayOptions, exclude=("tau", "holdout", "bagging_fraction"))
def tune_tau(
    num_samples: int = typer.Option(8, "--num-samples", help="τ samples (trials); with --search grid, grid points."),
    search: str = typer.Option("optuna", "--search", help="optuna (TPE), hyperopt (TPE), random (log-uniform) "
                                                          "or grid (log-spaced)."),
    tau_min: float = typer.Option(1e-6, "--tau-min", help="Smallest τ searched (log scale)."),
    tau_max: float = typer.Option(1e-2, "--tau-max", help="Largest τ searched (log scale)."),
    seeds_per_sample: int = typer.Option(3, "--seeds-per-sample", help="K: seeds 0..K-1 trained for every τ."),
    objective: str = typer.Option("ensemble", "--objective", help="ensemble: score of the K-seed ensemble; "
                                                                  "single: mean score of the K seeds."),
    tune_on: str = typer.Option("train-holdout", "--tune-on", help="train-holdout: a seeded fraction of train "
                                                                   "(dev stays unseen); dev: the dev split."),
    holdout_fraction: float = typer.Option(0.1, "--holdout-fraction", help="Fraction of train held out "
                                                                           "(--tune-on train-holdout)."),
    early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop", help="ASHA: stop a poor τ after an "
                                                                              "IMP round."),
    search_seed: int = typer.Option(0, "--search-seed", help="Seed of the search algorithm's sampler."),
    top: int = typer.Option(5, "--top", help="Print the best N samples."),
    data_dir: Path | None = DATA_DIR_OPTION,
    store: Path = STORE_OPTION,
    experiment: str = EXPERIMENT_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    artifact_location: str | None = ARTIFACT_LOCATION_OPTION,
    report_dir: Path = typer.Option(Path("mte-report"), "--report-dir", help="The plot goes to "
                                                                             "<dir>/tune-tau/."),
    hparams: dict | None = None,
) -> None:
    """Search τ (log scale) for active-lt or random-lt with Ray Tune + ASHA; the best τ is recorded in MLflow."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    assert hparams is not None
    if tune_on not in TUNE_ON:
        raise MteError(f"--tune-on must be one of: {', '.join(TUNE_ON)}; got {tune_on!r}")
    if tune_on == "train-holdout" and not (0.0 < holdout_fraction < 1.0):
        raise MteError(f"--holdout-fraction must be in (0, 1), got {holdout_fraction:g}")
    data = dataclasses.replace(hparams[DataHparams], holdout=holdout_fraction if tune_on == "train-holdout" else 0.0)
    spec = RunSpec(data, hparams[ModelHparams], hparams[TrainHparams], hparams[MethodHparams], 0)
    o = TauOptions(spec=spec, search=search, num_samples=num_samples, tau_min=tau_min, tau_max=tau_max,
                   seeds=seeds_per_sample, objective=objective, tune_on=tune_on, early_stop=early_stop,
                   search_seed=search_seed, data_dir=data_dir, store=store, experiment=experiment,
                   tracking_uri=tracking_uri, artifact_location=artifact_location, ray=hparams[RayOptions], top=top,
                   report_dir=report_dir)
    outcome = run_tuning(o)
    if outcome.best_tau is None or outcome.failed:
        raise typer.Exit(1)


# ---- checks and the search algorithm ---------------------------------------------------------------------

def validate(o: TauOptions) -> TauOptions:
    """Everything checkable before Ray or a run exists; returns the options with the spec prepared.
    The cheap checks come first, so a typo fails before torch is even imported."""
    if o.search not in SEARCHES:
        raise MteError(f"unknown search {o.search!r}; choose one of: {', '.join(SEARCHES)}")
    for name, value in (("--tau-min", o.tau_min), ("--tau-max", o.tau_max)):
        if not value > 0 or math.isinf(value):
            raise MteError(f"{name} must be a positive number, got {value:g}")
    if o.tau_min >= o.tau_max:
        raise MteError(f"--tau-min ({o.tau_min:g}) must be smaller than --tau-max ({o.tau_max:g})")
    if o.objective not in OBJECTIVES:
        raise MteError(f"--objective must be one of: {', '.join(OBJECTIVES)}; got {o.objective!r}")
    if o.tune_on not in TUNE_ON:
        raise MteError(f"--tune-on must be one of: {', '.join(TUNE_ON)}; got {o.tune_on!r}")
    method = o.spec.method.method
    if method not in REGULARISED_METHODS:
        raise MteError(f"--method: τ is used only by {' and '.join(REGULARISED_METHODS)}, got {method!r}")
    if o.num_samples < 1:
        raise MteError(f"--num-samples must be >= 1, got {o.num_samples}")
    if o.search == "grid" and o.num_samples < 2:
        raise MteError("--search grid needs --num-samples >= 2 (the grid's points)")
    if o.seeds < 1:
        raise MteError(f"--seeds-per-sample must be >= 1, got {o.seeds}")
    if method == "active-lt" and o.seeds < 2:
        raise MteError("active-lt needs --seeds-per-sample >= 2: its seed 0 has no earlier masks, so τ does not "
                       "act on it")
    if o.objective == "ensemble" and o.seeds < 2:
        raise MteError("--objective ensemble needs --seeds-per-sample >= 2 (or use --objective single)")
    search_library(o.search)

    from mte.lottery import prepare_spec

    o.ray.validate()
    return dataclasses.replace(o, spec=prepare_spec(o.spec))


def search_library(search: str) -> None:
    """The optional library behind a search algorithm must import."""
    module = SEARCHES[search]
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise MteError(f"--search {search} needs the '{module}' package, which cannot be imported ({e}); "
                       f"install it (pip install {module}) or use --search random") from None


def search_setup(o: TauOptions) -> tuple[Any, dict[str, Any], int]:
    """(search algorithm, parameter space, num_samples) for Ray Tune."""
    import numpy as np
    from ray import tune

    space = {"tau": tune.loguniform(o.tau_min, o.tau_max)}
    if o.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one line per study
        return OptunaSearch(seed=o.search_seed), space, o.num_samples
    if o.search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return (HyperOptSearch(random_state_seed=o.search_seed, n_initial_points=max(1, min(20, o.num_samples // 2))),
                space, o.num_samples)
    from ray.tune.search import BasicVariantGenerator

    if o.search == "random":
        return BasicVariantGenerator(random_state=o.search_seed), space, o.num_samples
    grid = [float(t) for t in np.geomspace(o.tau_min, o.tau_max, o.num_samples)]
    return BasicVariantGenerator(), {"tau": tune.grid_search(grid)}, 1


# ---- driver -----------------------------------------------------------------------------------------------

def run_tuning(o: TauOptions) -> TuningOutcome:
    """Check → parent run → Ray Tune → close the sample runs → record the best τ → plot and print."""
    from mte import data as data_mod
    from mte.tasks import get_task
    from sweeps.cluster import check_local_gpus, check_resources, connect
    from tracking import tau as tracked
    from tracking.experiment import ensure_experiment
    from tracking.trial_runs import retry
    from tracking.uri import check_reachable, default_artifact_location, resolve_tracking_uri

    start = time.perf_counter()
    o = validate(o)
    data_dir = data_mod.resolve_data_dir(o.data_dir)
    fingerprint = data_mod.data_fingerprint(get_task(o.spec.data.task), data_dir)
    check_local_gpus(o.ray)
    uri = resolve_tracking_uri(o.tracking_uri)
    client = check_reachable(uri)
    experiment_id = ensure_experiment(client, o.experiment, o.artifact_location
                                      or default_artifact_location(uri, o.experiment))
    cluster = connect(o.ray)
    try:
        check_resources(o.ray)
        if cluster.dashboard_url:
            console.print(f"Ray dashboard: {cluster.dashboard_url}", highlight=False)
        parent = tracked.open_tuning(client, experiment_id, _run_name(o), _parent_tags(o, fingerprint, data_dir),
                                     _parent_params(o))
        console.print(f"tune-tau {o.spec.data.task} · {o.spec.method.method} · {o.search} search · "
                      f"{o.num_samples} samples of τ in [{o.tau_min:g}, {o.tau_max:g}] · K={o.seeds} seeds · "
                      f"{o.objective} {_headline(o)} on {_where(o)} · experiment {o.experiment!r} · "
                      f"parent run {parent}", highlight=False)
        status, best = "FAILED", None
        try:
            errors, stopped = _tune(o, uri, experiment_id, parent, data_dir)
            runs = _close_samples(client, experiment_id, parent, stopped)
            best = tracked.best_sample(runs)
            if best is not None:
                tracked.record_best(client, parent, best)
                status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            tracked.close(client, parent, status)
    finally:
        cluster.shutdown()
    plot = plot_objective(o, runs, best, o.report_dir / "tune-tau" / f"{o.spec.data.task}-{o.spec.method.method}-"
                                                                     f"{parent[:8]}.png")
    if plot is not None:
        retry(client.log_artifact, parent, str(plot))
    counts = {s: sum(r.info.status == s for r in runs) for s in ("FINISHED", "KILLED", "FAILED")}
    outcome = TuningOutcome(
        parent, uri, float(best.data.params["tau"]) if best else None,
        best.data.metrics[tracked.FINAL] if best else None, best.info.run_id if best else None,
        counts["FINISHED"], counts["KILLED"], max(counts["FAILED"], len(errors)), plot, errors,
        time.perf_counter() - start)
    print_summary(o, outcome, runs)
    return outcome


def _tune(o: TauOptions, uri: str, experiment_id: str, parent: str, data_dir: Path | None
          ) -> tuple[dict[str, str], dict[str, int]]:
    """Run the samples: (trial id → error line of failed trials, run id → milestones of samples ASHA stopped)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sweeps.tau_trial import TauProgress, tau_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's newer console output ignores verbose=0
    store = o.store.resolve()
    shared = {"spec": o.spec.to_dict(), "store": str(store), "tracking_uri": uri, "experiment_id": experiment_id,
              "parent_run_id": parent, "data_dir": str(data_dir) if data_dir else None, "seeds": o.seeds,
              "objective": o.objective, "tune_on": o.tune_on, "cpus_per_trial": o.ray.cpus_per_trial,
              "milestones": o.milestones}
    search_alg, space, num_samples = search_setup(o)
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=o.milestones, grace_period=1,
                               reduction_factor=REDUCTION_FACTOR) if o.early_stop else None)
    progress = TauProgress(o.milestones)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tau_trial, shared=shared),
                            o.ray.trial_resources),
        param_space=space,
        tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=search_alg, scheduler=scheduler,
                                    num_samples=num_samples, max_concurrent_trials=o.ray.max_concurrent,
                                    reuse_actors=False,  # a stopped trial's process, and its store locks, must go
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=f"tune-tau-{o.spec.data.task}-{o.spec.method.method}-"
                                       f"{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(store / "ray-tune"), verbose=0, callbacks=[progress],
                                  failure_config=tune.FailureConfig(max_failures=o.ray.max_failures)))
    quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # failures get one line each; Tune would also print every traceback
        lg.setLevel(logging.CRITICAL)
    try:
        tuner.fit()
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    return progress.errors, progress.stopped


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def _close_samples(client: Any, experiment_id: str, parent: str, stopped: dict[str, int]) -> list:
    """Close what trials could not: a sample ASHA stopped (its process is gone) → KILLED, tagged with the
    milestones it reached; any other run left RUNNING (an attempt that failed) → FAILED. Returns the samples."""
    from tracking import tau as tracked

    for run in tracked.samples(client, experiment_id, parent):
        if run.info.status != "RUNNING":
            continue
        run_id = run.info.run_id
        if run_id in stopped:
            tracked.close(client, run_id, "KILLED", {tracked.STOPPED_AT: str(stopped[run_id] - 1)})
        else:
            tracked.close(client, run_id, "FAILED")
    return tracked.samples(client, experiment_id, parent)


def _headline(o: TauOptions) -> str:
    from mte.tasks import get_task

    return get_task(o.spec.data.task).metrics[0]


def _where(o: TauOptions) -> str:
    if o.tune_on == "dev":
        return "DEV (dev is then not held out from tuning)"
    return f"a {o.spec.data.holdout:.0%} holdout of train"


def _run_name(o: TauOptions) -> str:
    return f"tune-tau-{o.spec.data.task}-{o.spec.method.method}-{'DEV' if o.tune_on == 'dev' else 'holdout'}"


def _parent_tags(o: TauOptions, fingerprint: str, data_dir: Path | None) -> dict[str, str]:
    from tracking import tau as tracked

    note = (f"τ tuned on {_where(o)}: {o.objective} {_headline(o)} of seeds 0..{o.seeds - 1}, {o.search} search, "
            f"{o.num_samples} samples of [{o.tau_min:g}, {o.tau_max:g}]"
            + (", ASHA early stopping after IMP rounds." if o.early_stop else "."))
    return {tracked.TASK: o.spec.data.task, tracked.MODEL: o.spec.model.model, tracked.METHOD: o.spec.method.method,
            tracked.TUNE_ON: o.tune_on, tracked.OBJECTIVE: o.objective, "search": o.search,
            "data_fingerprint": fingerprint, "store": str(o.store.resolve()),
            "data_dir": str(data_dir) if data_dir else "hub", "mlflow.note.content": note}


def _parent_params(o: TauOptions) -> dict[str, Any]:
    flat = {k: v for k, v in o.spec.flat().items() if k not in ("method", "seed", "tau")}
    return flat | {"search": o.search, "num_samples": o.num_samples, "tau_min": o.tau_min, "tau_max": o.tau_max,
                   "seeds_per_sample": o.seeds, "objective_metric": f"{o.objective}/{_headline(o)}",
                   "early_stop": o.early_stop, "search_seed": o.search_seed, "milestones": o.milestones}


# ---- report ----------------------------------------------------------------------------------------------

def plot_objective(o: TauOptions, runs: Sequence[Any], best: Any, path: Path) -> Path | None:
    """Objective versus τ (log x): finished samples filled, early-stopped ones hollow at their last value."""
    from tracking import tau as tracked

    def points(status: str, metric: str) -> tuple[list[float], list[float]]:
        sel = [r for r in runs if r.info.status == status and metric in r.data.metrics]
        return [float(r.data.params["tau"]) for r in sel], [r.data.metrics[metric] for r in sel]

    done, stopped = points("FINISHED", tracked.FINAL), points("KILLED", "objective")
    if not done[0] and not stopped[0]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter(*done, color="tab:blue", label="ran every round", zorder=3)
    if stopped[0]:
        ax.scatter(*stopped, facecolors="none", edgecolors="tab:gray",
                   label="stopped early (value at its last round)", zorder=2)
    if best is not None:
        bt, bv = float(best.data.params["tau"]), best.data.metrics[tracked.FINAL]
        ax.scatter([bt], [bv], marker="*", s=220, color="tab:red", label=f"best τ = {bt:.3g}", zorder=4)
    ax.set_xscale("log")
    ax.set_xlim(o.tau_min / 1.5, o.tau_max * 1.5)
    ax.set_xlabel("τ (L1 coefficient of the masking regulariser)")
    ax.set_ylabel(f"{o.objective} {_headline(o)} ({o.seeds} seeds)")
    ax.set_title(f"{o.spec.data.task} · {o.spec.method.method} · tuned on {o.tune_on}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_summary(o: TauOptions, outcome: TuningOutcome, runs: Sequence[Any]) -> None:
    from tracking import tau as tracked

    head = _headline(o)
    done = sorted((r for r in runs if r.info.status == "FINISHED" and tracked.FINAL in r.data.metrics),
                  key=lambda r: (-r.data.metrics[tracked.FINAL], float(r.data.params["tau"])))
    table = Table(title=f"best τ samples · {o.spec.data.task} {o.spec.method.method} · {o.objective} {head} on "
                        f"{o.tune_on} · {outcome.wall_s:.0f} s")
    for col in ("rank", "τ", "objective", f"ensemble {head}", f"single {head}", "sparsity", "run"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for i, r in enumerate(done[:max(o.top, 0)], 1):
        m = r.data.metrics
        table.add_row(str(i), f"{float(r.data.params['tau']):.3g}", f"{m[tracked.FINAL]:.4f}",
                      f"{m.get(f'ensemble/{head}', math.nan):.4f}", f"{m.get(f'single/{head}', math.nan):.4f}",
                      f"{m.get('sparsity', math.nan):.1%}", r.info.run_id)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    say = Console(width=None if sys.stdout.isatty() else 160).print
    say(f"samples: {outcome.finished} ran every round, {outcome.stopped} stopped early, {outcome.failed} failed",
        highlight=False)
    for trial, err in outcome.errors.items():
        console.print(f"[red]failed trial[/] {trial}: {err}", highlight=False)
    if outcome.best_tau is None:
        console.print("no sample ran every round: no best τ recorded (parent run FAILED)", highlight=False)
        return
    say(f"best τ = {outcome.best_tau:.4g} ({o.objective} {head} {outcome.best_objective:.4f} on {o.tune_on}; "
        f"sample run {outcome.best_run_id}), recorded as best_tau on tune-tau run {outcome.parent_run_id}",
        highlight=False)
    if outcome.plot is not None:
        say(f"plot: {outcome.plot} (also in the parent run's artifacts)", highlight=False)
