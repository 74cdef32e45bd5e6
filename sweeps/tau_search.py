"""`mte tune-tau`'s driver: a Ray Tune search over the L1 coefficient τ of ACTIVE-LT or RANDOM-LT, with ASHA,
recorded in MLflow. The trial is `sweeps.tau_trial`; the outcome, its plot and its table are `sweeps.tau_report`.

One trial per τ sample runs K seeds (0..K−1) through the science core and reports an objective after every
IMP round, so the early-stopping scheduler (ASHA) can drop a poor τ before its tickets are trained (the
milestones are described in `sweeps.tau_trial`). The objective is measured on a seeded holdout of train
(`DataHparams.holdout`, dev untouched) unless `--tune-on dev`, which the MLflow runs say loudly. Only samples
that ran every milestone compete for the best τ. MLflow layout: `tracking/tau.py`.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mte.errors import MteError
from sweeps.cluster import check_nodes
from sweeps.options import TauOptions
from sweeps.session import plugin_config, preflight, quiet_fit, ray_cluster, run_config, storage_path, trial_store_path
from sweeps.tau_report import TuningOutcome, plot_objective, print_summary

console = Console(stderr=True, soft_wrap=True)  # piped to a log, a line stays one line
SEARCH_LIBRARIES = {"optuna": "optuna", "hyperopt": "hyperopt"}  # search → the package it needs
REDUCTION_FACTOR = 3  # ASHA keeps the best third of the samples at each rung


def search_library(search: str) -> None:
    """The optional library behind a search algorithm must import."""
    module = SEARCH_LIBRARIES.get(search)
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


def run_tuning(o: TauOptions) -> TuningOutcome:
    """Check → parent run → Ray Tune → close the sample runs → record the best τ → plot and print."""
    from mte import data as data_mod
    from mte.lottery import check_inputs
    from sweeps.inputs import check_data_files, check_model_files, check_sizes
    from tracking import tau as tracked
    from tracking.experiment import open_experiment
    from tracking.trial_runs import retry

    start = time.perf_counter()
    o = o.validate()
    search_library(o.search)
    preflight(o.ray, o.tracking.tracking_uri)
    data_dir = data_mod.resolve_data_dir(o.paths.data_dir)
    check_data_files(o.spec, data_dir)
    check_model_files(o.spec)
    check_sizes(o.spec, check_inputs(o.spec, data_dir), (o.spec.method.method,), "--holdout-fraction")
    fingerprint = data_mod.data_fingerprint(o.spec.task, data_dir)
    exp = open_experiment(o.tracking)
    client = exp.client
    with ray_cluster(o.ray):
        if o.ray.ray_address:
            check_nodes(data_dir, o.spec.task.name, fingerprint)
        parent = tracked.open_tuning(client, exp.experiment_id, run_name(o), _parent_tags(o, fingerprint, data_dir),
                                     _parent_params(o))
        console.print(f"tune-tau {o.spec.data.task} · {o.spec.method.method} · {o.search} search · "
                      f"{o.num_samples} samples of τ in [{o.tau_min:g}, {o.tau_max:g}] · K={o.seeds_per_sample} "
                      f"seeds · {o.objective} {o.headline} on {o.tuned_on} · experiment {exp.name!r} · "
                      f"parent run {parent}", highlight=False)
        status, best = "FAILED", None
        try:
            errors, stopped = _tune(o, exp.uri, exp.experiment_id, parent, data_dir)
            runs = _close_samples(client, exp.experiment_id, parent, stopped)
            best = tracked.best_sample(runs)
            if best is not None:
                tracked.record_best(client, parent, best)
                status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            tracked.close(client, parent, status)
    plot = plot_objective(o, runs, best, o.report_dir / "tune-tau" / f"{o.spec.data.task}-{o.spec.method.method}-"
                                                                     f"{parent[:8]}.png")
    if plot is not None:
        retry(client.log_artifact, parent, str(plot))
    counts = {s: sum(r.info.status == s for r in runs) for s in ("FINISHED", "KILLED", "FAILED")}
    outcome = TuningOutcome(
        parent, exp.uri, float(best.data.params["tau"]) if best else None,
        best.data.metrics[tracked.FINAL] if best else None, best.info.run_id if best else None,
        counts["FINISHED"], counts["KILLED"], max(counts["FAILED"], len(errors)), plot, errors,
        time.perf_counter() - start)
    print_summary(o, outcome, runs)
    return outcome


def _tune(o: TauOptions, uri: str, experiment_id: str, parent: str, data_dir: Path | None
          ) -> tuple[dict[str, str], dict[str, int]]:
    """Run the samples: (trial id → error line of failed trials, run id → milestones of samples ASHA stopped)."""
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sweeps.tau_trial import TauProgress, tau_trial
    from tracking.remote import store_run

    remote = uri.startswith(("http://", "https://"))  # a tracking server holds the shared result store
    shared = {"spec": o.spec.to_dict(), "store": trial_store_path(o.paths, o.ray), "tracking_uri": uri,
              "store_run": store_run(MlflowClient(uri)) if remote else None, "experiment_id": experiment_id,
              "parent_run_id": parent, "data_dir": str(data_dir) if data_dir else None,
              "seeds": o.seeds_per_sample, "objective": o.objective, "tune_on": o.tune_on,
              "cpus_per_trial": o.ray.cpus_per_trial, "milestones": o.milestones} | plugin_config()
    search_alg, space, num_samples = search_setup(o)
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=o.milestones, grace_period=1,
                               reduction_factor=REDUCTION_FACTOR) if o.early_stop else None)
    progress = TauProgress(o.milestones)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tau_trial, shared=shared), o.ray.trial_resources),
        param_space=space,
        tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=search_alg, scheduler=scheduler,
                                    num_samples=num_samples, max_concurrent_trials=o.ray.max_concurrent,
                                    # the next sample runs in a stopped one's process (torch and the model are
                                    # imported); a stopped sample holds no store lock (`seed_rounds`)
                                    reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=run_config(f"tune-tau-{o.spec.data.task}-{o.spec.method.method}-{time.strftime('%Y%m%d-%H%M%S')}",
                              storage_path(o.ray, o.paths.store), [progress], o.ray.max_failures))
    quiet_fit(tuner)
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


def run_name(o: TauOptions) -> str:
    return f"tune-tau-{o.spec.data.task}-{o.spec.method.method}-{'DEV' if o.tune_on == 'dev' else 'holdout'}"


def _parent_tags(o: TauOptions, fingerprint: str, data_dir: Path | None) -> dict[str, str]:
    from tracking import tau as tracked

    note = (f"τ tuned on {o.tuned_on}: {o.objective} {o.headline} of seeds 0..{o.seeds_per_sample - 1}, {o.search} "
            f"search, {o.num_samples} samples of [{o.tau_min:g}, {o.tau_max:g}]"
            + (", ASHA early stopping after IMP rounds." if o.early_stop else "."))
    return {tracked.TASK: o.spec.data.task, tracked.MODEL: o.spec.model.model, tracked.METHOD: o.spec.method.method,
            tracked.TUNE_ON: o.tune_on, tracked.OBJECTIVE: o.objective, "search": o.search,
            "data_fingerprint": fingerprint, "store": str(o.paths.store.resolve()),
            "data_dir": str(data_dir) if data_dir else "hub", "mlflow.note.content": note}


def _parent_params(o: TauOptions) -> dict[str, Any]:
    flat = {k: v for k, v in o.spec.flat().items() if k not in ("method", "seed", "tau")}
    return flat | {"search": o.search, "num_samples": o.num_samples, "tau_min": o.tau_min, "tau_max": o.tau_max,
                   "seeds_per_sample": o.seeds_per_sample, "objective_metric": f"{o.objective}/{o.headline}",
                   "early_stop": o.early_stop, "search_seed": o.search_seed, "milestones": o.milestones}
