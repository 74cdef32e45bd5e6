"""One sweep from validated options to recorded results: check → plan → Ray Tune → reconcile with MLflow.

Everything that can be wrong with the input is checked before the parent run exists, so bad input leaves
no trace in the tracking store. After the trials, MLflow (not Ray) is the record of what finished: a unit
is done iff the sweep holds a FINISHED run with its hash. The parent run ends FINISHED only if every
requested unit is done, FAILED (or KILLED on Ctrl-C) otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mte.errors import MteError
from sweeps.cluster import check_nodes
from sweeps.options import SweepOptions
from sweeps.plan import SweepPlan, Unit
from sweeps.session import (
    check_interrupted,
    if_ray_lost,
    plugin_config,
    preflight,
    quiet_fit,
    ray_cluster,
    run_config,
    storage_path,
    trial_store_path,
    while_ray_starts,
)

console = Console(stderr=True)


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
    """Check everything, run what the sweep's parent run does not hold yet, and record the verdict."""
    from tracking.experiment import connect, find_parent, open_experiment
    from tracking.tau import tuned_tau_at
    from tracking.trial_runs import finished_hashes
    from tracking.uri import resolve_tracking_uri

    start = time.perf_counter()
    o = o.validate()
    preflight(o.ray, o.tracking.tracking_uri)  # also for --executor local: its GPU request and workers
    plan = SweepPlan.build(o.spec, o.methods, o.seeds, o.paths.data_dir)
    check_interrupted()
    tuned, tau_source = plan, {"kind": "given", "tau": plan.base.method.tau}
    if o.tau_from_tuning:  # before Ray, a database or the experiment exists: a missing tuning leaves nothing behind
        found = tuned_tau_at(resolve_tracking_uri(o.tracking.tracking_uri), o.tau_from_tuning,
                             plan.base.model.model, plan.methods)
        tuned = plan.with_taus({t.method: t.tau for t in found})
        tau_source = {"kind": "tuning", "task": found[0].task, "taus": {t.method: t.tau for t in found},
                      "run_id": ",".join(t.run_id for t in found), "tune_on": ",".join({t.tune_on for t in found})}
        for t in found:
            console.print(f"--tau-from-tuning {o.tau_from_tuning}: {t.method}: {t.description}", highlight=False)

    def open_tracking() -> tuple[SweepPlan, Any, dict[str, Any], dict[str, str]]:
        """The plan with its τ, the experiment, where τ came from, and what the sweep has recorded."""
        client, _ = connect(o.tracking)
        exp = open_experiment(o.tracking, client)
        previous = find_parent(exp.client, exp.experiment_id, tuned.sweep_hash)
        finished = finished_hashes(exp.client, exp.experiment_id, previous.info.run_id) if previous else {}
        return tuned, exp, tau_source, finished

    # One driver per sweep (these options, this store) at a time: taken before a local Ray starts, which it does
    # while MLflow is opened and read.
    with sweep_lock(o.paths.store, plan.sweep_hash):
        if o.executor == "local":  # no Ray: worker processes on this machine (`sweeps.local`)
            plan, exp, tau_source, finished = open_tracking()
            check_interrupted()
            return _record(o, plan, exp, finished, plan.trials(set(finished)), start, tau_source)
        (plan, exp, tau_source, finished), started = while_ray_starts(o.ray, open_tracking)
        trials = plan.trials(set(finished))
        if started is not None and not trials:
            started.shutdown()  # everything is recorded already
        with ray_cluster(o.ray, started) if trials else contextlib.nullcontext():
            check_interrupted()  # inside: the Ray this sweep started is stopped on the way out
            if trials and o.ray.ray_address:
                nodes = check_nodes(plan.data_dir, plan.base.task.name, plan.fingerprint)
                console.print(f"cluster {o.ray.ray_address}: {nodes} node(s) read the same data", highlight=False)
            return _record(o, plan, exp, finished, trials, start, tau_source)


@contextlib.contextmanager
def sweep_lock(store: Path, sweep_hash: str) -> Iterator[None]:
    """Refuse (one line) to drive a sweep another process on this machine drives from the same store; the lock
    goes with the process, however it ends."""
    locks = store / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"sweep-{sweep_hash}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise MteError(f"a sweep with these options ({sweep_hash}) is already running from this store (driver "
                           f"pid {f.read().strip() or '?'}); wait for it to finish, or stop it") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


def _record(o: SweepOptions, plan: SweepPlan, exp: Any, finished: dict[str, str], trials: list[dict[str, Any]],
            start: float, tau_source: dict[str, Any]) -> SweepOutcome:
    """Open the parent run (input is valid by now), run the trials, close it with the verdict."""
    from tracking.experiment import close_parent, open_parent
    from tracking.trial_runs import finished_hashes

    client = exp.client
    parent = open_parent(client, exp.experiment_id, plan.sweep_hash,
                         name=f"sweep-{plan.base.data.task}-{plan.sweep_hash[:8]}",
                         tags=_parent_tags(plan, o, tau_source), params=_parent_params(plan),
                         config=_recorded(o, plan, tau_source))
    _record_environment(client, parent, plan)
    done = {u for u in plan.units if plan.unit_hash(u) in finished}
    console.print(f"sweep {plan.sweep_hash} · experiment {o.tracking.experiment!r} · parent run {parent} · "
                  f"{len(plan.units)} trials: {len(done)} already recorded, {len(plan.units) - len(done)} to run",
                  highlight=False)
    status, errors, interrupted = "FAILED", {}, False
    try:
        if trials:
            with if_ray_lost(lambda: close_parent(client, parent, "KILLED")):
                execute = _local if o.executor == "local" else _tune
                errors, interrupted = execute(plan, o, trials, done, exp.uri, exp.experiment_id, parent)
        finished = finished_hashes(client, exp.experiment_id, parent)
        done_units = [u for u in plan.units if plan.unit_hash(u) in finished]
        failed = [u for u in plan.units if plan.unit_hash(u) not in finished]
        status = "KILLED" if interrupted else "FINISHED" if not failed else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        close_parent(client, parent, status)
    outcome = SweepOutcome(exp.experiment_id, parent, exp.uri, done_units, failed, len(trials), plan.sweep_hash,
                           interrupted, errors, time.perf_counter() - start)
    print_summary(client, exp.experiment_id, outcome, o)
    return outcome


def _tune(plan: SweepPlan, o: SweepOptions, trials: list[dict[str, Any]], done: set[Unit], uri: str,
          experiment_id: str, parent: str) -> tuple[dict[str, str], bool]:
    """Run the trials through Ray Tune with the live view: (trial name → error of failed trials, whether
    Ctrl-C stopped it, i.e. units were left pending or running)."""
    from ray import tune

    from sweeps.trial import run_trial
    from sweeps.tune_view import TuneSweepView

    view = TuneSweepView(plan.units, done, trials, _fine_tunes(plan), console,
                         f"{plan.base.data.task} sweep {plan.sweep_hash[:8]}")
    tuner = tune.Tuner(
        tune.with_resources(run_trial, o.ray.trial_resources),
        param_space={"sweep": _shared(plan, o, uri, experiment_id, parent), "trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(max_concurrent_trials=o.ray.max_concurrent, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=run_config(f"{plan.sweep_hash}-{time.strftime('%Y%m%d-%H%M%S')}",
                              storage_path(o.ray, o.paths.store), [view], o.ray.max_failures))
    with view:
        quiet_fit(tuner)
    counts = view.counts()
    return view.errors, counts["pending"] + counts["running"] > 0


def _local(plan: SweepPlan, o: SweepOptions, trials: list[dict[str, Any]], done: set[Unit], uri: str,
           experiment_id: str, parent: str) -> tuple[dict[str, str], bool]:
    """`_tune` without Ray: the same trials as worker processes on this machine (`sweeps.local`)."""
    from sweeps.live import SweepView
    from sweeps.local import run_local

    view = SweepView(plan.units, done, trials, _fine_tunes(plan), console,
                     f"{plan.base.data.task} sweep {plan.sweep_hash[:8]} (local)")
    with view:
        interrupted = run_local(trials, _shared(plan, o, uri, experiment_id, parent), view, o.ray)
    return view.errors, interrupted


def _fine_tunes(plan: SweepPlan) -> dict[Unit, int]:
    """Fine-tunes per unit, for the live view's progress."""
    return {u: len(w) for u, w in plan.work.items()}


def _shared(plan: SweepPlan, o: SweepOptions, uri: str, experiment_id: str, parent: str) -> dict[str, Any]:
    """What every trial of the sweep is given (`sweeps.trial.run_units`'s `sweep`)."""
    from mlflow import MlflowClient

    from sweeps.trial import TEST_CRASH_ENV
    from tracking.remote import store_run

    remote = uri.startswith(("http://", "https://"))  # a tracking server holds the shared result store
    return {"spec": plan.base.to_dict(), "store": trial_store_path(o.paths, o.ray), "tracking_uri": uri,
            "store_run": store_run(MlflowClient(uri)) if remote else None,
            "data_dir": str(plan.data_dir) if plan.data_dir else None, "experiment_id": experiment_id,
            "parent_run_id": parent, "sweep_hash": plan.sweep_hash, "cpus_per_trial": o.ray.cpus_per_trial,
            "test_crash": os.environ.get(TEST_CRASH_ENV), "system_metrics": o.system_metrics,
            "epoch_curves": o.epoch_curves} | plugin_config()


def _trial_name(trial: Any) -> str:
    return trial.config["trial"]["name"]


def _parent_tags(plan: SweepPlan, o: SweepOptions, tau_source: dict[str, Any]) -> dict[str, str]:
    from tracking import provenance
    from tracking.experiment import PRESET_TAG, TAU_SOURCE_TAG

    return {"task": plan.base.data.task, "model": plan.base.model.model, "methods": ",".join(plan.methods),
            "seeds": str(plan.seeds), "data_fingerprint": plan.fingerprint, "store": str(o.paths.store.resolve()),
            "data_dir": str(plan.data_dir) if plan.data_dir else "hub", PRESET_TAG: o.preset or "none",
            TAU_SOURCE_TAG: json.dumps(tau_source)} | provenance.tags("mte sweep") | _plugin_tag()


def _plugin_tag() -> dict[str, str]:
    """The plugins the sweep loaded (files by absolute path, modules by name), which `--resume` loads again."""
    from mte import plugins
    from tracking.experiment import PLUGINS_TAG

    loaded = [s.get("file") or s["given"] for s in plugins.loaded()]
    return {PLUGINS_TAG: json.dumps(loaded)} if loaded else {}


def _record_environment(client: Any, parent: str, plan: SweepPlan) -> None:
    """The parent run's inputs (the data, as MLflow datasets) and the driver's installed requirements."""
    import tempfile

    from tracking import provenance
    from tracking.trial_runs import retry

    retry(client.log_inputs, parent, datasets=provenance.dataset_inputs(
        plan.base.task, plan.data_dir, plan.fingerprint, plan.sizes, holdout=plan.base.data.holdout > 0))
    with tempfile.TemporaryDirectory(prefix="mte-env-") as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_text(provenance.requirements())
        retry(client.log_artifact, parent, str(path), str(Path(provenance.REQUIREMENTS).parent))


def _recorded(o: SweepOptions, plan: SweepPlan, tau_source: dict[str, Any]) -> dict[str, Any]:
    """What `--resume` continues: the lr actually used and, for a tuned τ, the tuning runs themselves (so a newer
    tuning cannot change the sweep)."""
    runs = tau_source.get("run_id") if tau_source["kind"] == "tuning" else None
    return dataclasses.replace(o, spec=plan.base, tau_from_tuning=runs).recorded()


def _parent_params(plan: SweepPlan) -> dict[str, Any]:
    """The shared hyperparameters that matter to the sweep's methods (e.g. τ only with a regularised method)."""
    from tracking.trial_runs import trial_params

    out: dict[str, Any] = {}
    for method in plan.methods:
        out |= trial_params(plan.spec(Unit(method, 0)))
    for name in ("method", "seed"):
        out.pop(name, None)
    return out


def print_summary(client: Any, experiment_id: str, outcome: SweepOutcome, o: SweepOptions) -> None:
    """Per method: seeds done, failed seeds, mean final dev metrics (read back from MLflow)."""
    from tracking.trial_runs import FINISHED, METHOD, trial_runs

    runs = [r for r in trial_runs(client, experiment_id, outcome.parent_run_id) if r.info.status == FINISHED]
    table = Table(title=f"experiment {o.tracking.experiment!r} · parent run {outcome.parent_run_id} · "
                        f"{outcome.wall_s:.0f} s")
    # The dev metrics (named `dev_<metric>`; `<metric>` in runs recorded before that name) and the sparsity.
    names = sorted({k for r in runs for k in r.data.metrics if "/" not in k and k in _dev_metric_names(r)},
                   key=lambda k: (k == "sparsity", k))
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
    bookkeeping = {"compute_s", "elapsed_s", "log_s", "reused_fine_tunes", "train_loss", "train_loss_steps"}
    return {k for k in run.data.metrics if k not in bookkeeping and not k.startswith("system/")}

