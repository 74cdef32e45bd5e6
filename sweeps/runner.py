"""One sweep from validated options to recorded results: check → plan → Ray Tune → reconcile with MLflow.

Everything that can be wrong with the input is checked before the parent run exists, so bad input leaves
no trace in the tracking store. After the trials, MLflow (not Ray) is the record of what finished: a unit
is done iff the sweep holds a FINISHED run with its hash. The parent run ends FINISHED only if every
requested unit is done, FAILED (or KILLED on Ctrl-C) otherwise.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mte.hparams import RunSpec
from sweeps.cluster import Cluster, RayOptions, check_local_gpus, check_resources, connect
from sweeps.plan import SweepPlan, Unit

console = Console(stderr=True)


@dataclass
class SweepOptions:
    base: RunSpec  # shared hyperparameters; method and seed are set per unit
    methods: tuple[str, ...]
    seeds: int
    data_dir: Path | None
    store: Path
    experiment: str = "mte"
    tracking_uri: str | None = None
    artifact_location: str | None = None
    ray: RayOptions = field(default_factory=RayOptions)
    test_crash: str | None = None  # sweeps.trial.CrashHook; tests only


@dataclass
class SweepOutcome:
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    done: list[Unit]
    failed: list[Unit]
    ran: int  # trials launched this time (0 when everything was already recorded)
    sweep_hash: str = ""
    interrupted: bool = False  # Ctrl-C: Ray Tune stops the trials gracefully and returns
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0




def run_sweep(o: SweepOptions) -> SweepOutcome:
    from tracking.experiment import ensure_experiment, find_parent
    from tracking.trial_runs import finished_hashes
    from tracking.uri import check_reachable, default_artifact_location, resolve_tracking_uri

    start = time.perf_counter()
    o.ray.validate()
    plan = SweepPlan.build(o.base, o.methods, o.seeds, o.data_dir)
    check_local_gpus(o.ray)
    uri = resolve_tracking_uri(o.tracking_uri)
    client = check_reachable(uri)
    experiment_id = ensure_experiment(client, o.experiment, o.artifact_location
                                      or default_artifact_location(uri, o.experiment))
    previous = find_parent(client, experiment_id, plan.sweep_hash)
    finished = finished_hashes(client, experiment_id, previous.info.run_id) if previous else {}
    trials = plan.trials(set(finished))
    cluster = connect(o.ray) if trials else None
    try:
        return _record(o, plan, client, uri, experiment_id, finished, trials, cluster, start)
    finally:
        if cluster is not None:
            cluster.shutdown()


def _record(o: SweepOptions, plan: SweepPlan, client: Any, uri: str, experiment_id: str, finished: dict[str, str],
            trials: list[dict[str, Any]], cluster: Cluster | None, start: float) -> SweepOutcome:
    """Open the parent run (input is valid by now), run the trials, close it with the verdict."""
    from tracking.experiment import close_parent, open_parent
    from tracking.trial_runs import finished_hashes

    if cluster is not None:
        check_resources(o.ray)
        if cluster.dashboard_url:
            console.print(f"Ray dashboard: {cluster.dashboard_url}", highlight=False)
    parent = open_parent(client, experiment_id, plan.sweep_hash,
                         name=f"sweep-{plan.base.data.task}-{plan.sweep_hash[:8]}",
                         tags=_parent_tags(plan, o), params=_parent_params(plan), config=recordable_config(o))
    done = {u for u in plan.units if plan.unit_hash(u) in finished}
    console.print(f"sweep {plan.sweep_hash} · experiment {o.experiment!r} · parent run {parent} · "
                  f"{len(plan.units)} trials: {len(done)} already recorded, {len(plan.units) - len(done)} to run",
                  highlight=False)
    status, errors, interrupted = "FAILED", {}, False
    try:
        if trials:
            errors, interrupted = _tune(plan, o, trials, done, uri, experiment_id, parent)
        finished = finished_hashes(client, experiment_id, parent)
        done_units = [u for u in plan.units if plan.unit_hash(u) in finished]
        failed = [u for u in plan.units if plan.unit_hash(u) not in finished]
        status = "KILLED" if interrupted else "FINISHED" if not failed else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        close_parent(client, parent, status)
    outcome = SweepOutcome(experiment_id, parent, uri, done_units, failed, len(trials), plan.sweep_hash,
                           interrupted, errors, time.perf_counter() - start)
    print_summary(client, experiment_id, outcome, o)
    return outcome


def _tune(plan: SweepPlan, o: SweepOptions, trials: list[dict[str, Any]], done: set[Unit], uri: str,
          experiment_id: str, parent: str) -> tuple[dict[str, str], bool]:
    """Run the trials through Ray Tune with the live view: (trial name → error of failed trials, whether
    Ctrl-C stopped it, i.e. units were left pending or running)."""
    from ray import tune

    from sweeps.live import SweepView
    from sweeps.trial import run_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's newer console output ignores verbose=0
    store = o.store.resolve()
    shared = {"spec": plan.base.to_dict(), "store": str(store), "tracking_uri": uri,
              "data_dir": str(plan.data_dir) if plan.data_dir else None, "experiment_id": experiment_id,
              "parent_run_id": parent, "sweep_hash": plan.sweep_hash, "cpus_per_trial": o.ray.cpus_per_trial,
              "test_crash": o.test_crash}
    view = SweepView(plan.units, done, trials, plan.base.method.rounds, console,
                     f"{plan.base.data.task} sweep {plan.sweep_hash[:8]}")
    tuner = tune.Tuner(
        tune.with_resources(run_trial, o.ray.trial_resources),
        param_space={"sweep": shared, "trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(max_concurrent_trials=o.ray.max_concurrent, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=f"{plan.sweep_hash}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(store / "ray-tune"), verbose=0, callbacks=[view],
                                  failure_config=tune.FailureConfig(max_failures=o.ray.max_failures)))
    quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # the live view reports failures; Tune would also print every traceback
        lg.setLevel(logging.CRITICAL)
    try:
        with view:
            tuner.fit()
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    counts = view.counts()
    return view.errors, counts["pending"] + counts["running"] > 0


def _trial_name(trial: Any) -> str:
    return trial.config["trial"]["name"]


def _parent_tags(plan: SweepPlan, o: SweepOptions) -> dict[str, str]:
    return {"task": plan.base.data.task, "model": plan.base.model.model, "methods": ",".join(plan.methods),
            "seeds": str(plan.seeds), "data_fingerprint": plan.fingerprint, "store": str(o.store.resolve()),
            "data_dir": str(plan.data_dir) if plan.data_dir else "hub"}


def _parent_params(plan: SweepPlan) -> dict[str, Any]:
    flat = plan.base.flat()
    return {k: v for k, v in flat.items() if k not in ("method", "seed")}


def recordable_config(o: SweepOptions) -> dict[str, Any]:
    """The options `--resume` reads back: hyperparameters, methods, seeds, data and store."""
    spec = o.base.to_dict()
    spec.pop("seed")
    return {"hparams": spec, "methods": ",".join(o.methods), "seeds": o.seeds,
            "data_dir": str(o.data_dir.resolve()) if o.data_dir else None, "store": str(o.store.resolve())}


def print_summary(client: Any, experiment_id: str, outcome: SweepOutcome, o: SweepOptions) -> None:
    """Per method: seeds done, failed seeds, mean final dev metrics (read back from MLflow)."""
    from tracking.trial_runs import FINISHED, METHOD, trial_runs

    runs = [r for r in trial_runs(client, experiment_id, outcome.parent_run_id) if r.info.status == FINISHED]
    table = Table(title=f"experiment {o.experiment!r} · parent run {outcome.parent_run_id} · "
                        f"{outcome.wall_s:.0f} s")
    names = sorted({k for r in runs for k in r.data.metrics if "/" not in k and k in _dev_metric_names(r)})
    for col in ("method", "done", "missing seeds", *[f"mean {n}" for n in names]):
        table.add_column(col, justify="left" if col in ("method", "missing seeds") else "right")
    for method in o.methods:
        mine = [r for r in runs if r.data.tags.get(METHOD) == method]
        failed = [str(u.seed) for u in outcome.failed if u.method == method]
        means = []
        for n in names:
            vals = [r.data.metrics[n] for r in mine if n in r.data.metrics]
            means.append(f"{sum(vals) / len(vals):.4f}" if vals else "-")
        table.add_row(method, f"{len(mine)}/{o.seeds}", ",".join(failed) or "-", *means)
    Console().print(table)
    for name, err in outcome.errors.items():
        console.print(f"[red]failed trial[/] {name}: {err}", highlight=False)
    if outcome.interrupted:
        console.print("interrupted: rerun the same command to continue", highlight=False)
    elif outcome.failed:
        console.print(f"{len(outcome.failed)} of {len(outcome.done) + len(outcome.failed)} trials failed; "
                      "rerun the same command to retry only those", highlight=False)


def _dev_metric_names(run: Any) -> set[str]:
    bookkeeping = {"compute_s", "elapsed_s", "log_s", "reused_fine_tunes", "train_loss"}
    return {k for k in run.data.metrics if k not in bookkeeping}

