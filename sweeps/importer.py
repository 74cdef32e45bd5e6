"""`mte import`: a store's finished seeds recorded into MLflow as one sweep, as `mte sweep` records it.

For a store made where no tracking server was (`mte sweep --executor local` on a GPU box): the parent run gets
the sweep's hash, tags, params and recorded options, each seed one nested FINISHED run with the params, metrics,
artifacts and tags `tracking.trial_runs.log_seed_result` gives a sweep's trial. A seed already recorded in the
sweep (same hash tag) is skipped, so importing again adds nothing, and a sweep recorded by `mte sweep` is
completed rather than duplicated. The parent ends FINISHED when every method × seed 0..max is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mte.paths import Paths
from sweeps.options import SweepOptions
from sweeps.plan import Unit
from tracking.options import TrackingOptions

console = Console(stderr=True, soft_wrap=True)
IMPORTED_FROM = "imported_from"  # tag: the store a run was imported from


@dataclass
class Imported:
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    added: int
    already: int
    missing: list[Unit]


def import_store(store: Path, tracking: TrackingOptions, sweep: str | None = None) -> Imported:
    """Record the store's sweep (the one, or the one `sweep` names) into `tracking`'s experiment."""
    from mte.errors import MteError
    from sweeps.runner import _parent_params, _parent_tags, _recorded
    from sweeps.stored import missing, stored_sweep
    from tracking import provenance
    from tracking.experiment import close_parent, find_parent, open_experiment, open_parent, running_elsewhere
    from tracking.trial_runs import finished_hashes, log_seed_result, retry

    tracking.validate()
    found = stored_sweep(store, sweep)  # before anything is created in MLflow
    plan = found.plan
    store_dir = str(store.resolve())
    options = SweepOptions(spec=plan.base, methods=plan.methods, seeds=plan.seeds, paths=Paths(store=store.resolve()),
                           tracking=tracking, report=False)
    tau = {"kind": "given", "tau": plan.base.method.tau}
    exp = open_experiment(tracking)
    tags = _parent_tags(plan, options, tau) | provenance.tags("mte import") | {
        "data_dir": "unknown (imported from a store)", IMPORTED_FROM: store_dir}
    existing = find_parent(exp.client, exp.experiment_id, plan.sweep_hash)
    if existing is not None and (driver := running_elsewhere(existing)):
        raise MteError(f"sweep {plan.sweep_hash} is being recorded by another process ({driver}); wait for it")
    if existing is not None:  # recorded already (by a sweep or an import): its own tags and options stay
        parent = existing.info.run_id
    else:
        parent = open_parent(exp.client, exp.experiment_id, plan.sweep_hash,
                             name=f"sweep-{plan.base.data.task}-{plan.sweep_hash[:8]}", tags=tags,
                             params=_parent_params(plan), config=_recorded(options, plan, tau))
    status, added = "FAILED", 0
    try:
        if plan.sizes and existing is None:
            retry(exp.client.log_inputs, parent, datasets=provenance.dataset_inputs(
                plan.base.task, None, plan.fingerprint, plan.sizes, holdout=plan.base.data.holdout > 0))
        finished = finished_hashes(exp.client, exp.experiment_id, parent)
        for unit_hash, result in found.results.items():
            if unit_hash in finished:
                continue
            folder = found.folders[unit_hash]
            log_seed_result(exp.client, exp.experiment_id, parent, sweep_hash=plan.sweep_hash, unit_hash=unit_hash,
                            result=result, folder=folder, start_ms=int(folder.stat().st_mtime * 1000),
                            extra_tags={IMPORTED_FROM: store_dir})
            added += 1
        lacking = missing(found)
        status = "FINISHED" if not lacking else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if existing is None or added or status != existing.info.status:
            close_parent(exp.client, parent, status)
    return Imported(exp.experiment_id, parent, exp.uri, added, len(found.results) - added, lacking)


def describe(outcome: Imported, experiment: str) -> str:
    gaps = (f"; the store lacks {', '.join(u.name for u in outcome.missing)} (the parent run is FAILED until a "
            "sweep adds them)") if outcome.missing else ""
    return (f"imported {outcome.added} seed result(s) into experiment {experiment!r} (parent run "
            f"{outcome.parent_run_id}); {outcome.already} were recorded already{gaps}")

