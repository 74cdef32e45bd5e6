"""Reading a sweep back for the report stage: each finished trial's artifacts rebuilt as a `SeedResult`.

A trial run's artifact root is exactly a seed-result folder of the science core's store (see
`mte.results`), so `SeedResult.load` rebuilds it; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from mte.errors import MteError
from mte.hparams import METHODS
from mte.results import SeedResult
from tracking.experiment import find_parent
from tracking.trial_runs import FINISHED, HASH, retry, trial_runs
from tracking.uri import check_reachable, resolve_tracking_uri

PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass
class SweepRun:
    """One finished trial: its MLflow run id and hash tag, and the result rebuilt from its artifacts."""

    run_id: str
    hash: str
    result: SeedResult


def open_sweep(experiment_name: str, tracking_uri: str | None,
               parent_run_id: str | None) -> tuple[MlflowClient, str, str]:
    """(client, experiment id, parent run id) of a sweep: the given run, else the experiment's latest."""
    uri = resolve_tracking_uri(tracking_uri)
    client = check_reachable(uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise MteError(f"no experiment {experiment_name!r} in {uri}")
    if parent_run_id is None:
        parent = find_parent(client, exp.experiment_id)
        if parent is None:
            raise MteError(f"experiment {experiment_name!r} has no sweep")
        parent_run_id = parent.info.run_id
    return client, exp.experiment_id, parent_run_id


def load_sweep_runs(experiment_name: str, tracking_uri: str | None = None, parent_run_id: str | None = None,
                    dst: str | Path | None = None) -> list[SweepRun]:
    """Finished trials of a sweep (default: the experiment's latest), ordered by method then seed.

    Artifacts are downloaded to `dst/<run id>/` (kept) or to a temporary folder (removed after loading).
    """
    client, experiment_id, parent = open_sweep(experiment_name, tracking_uri, parent_run_id)
    runs = [r for r in trial_runs(client, experiment_id, parent) if r.info.status == FINISHED]
    out = []
    with tempfile.TemporaryDirectory(prefix="mte-sweep-") as tmp, _no_progress_bars():
        root = Path(dst) if dst is not None else Path(tmp)
        for run in runs:
            folder = root / run.info.run_id
            folder.mkdir(parents=True, exist_ok=True)
            local = retry(client.download_artifacts, run.info.run_id, "", str(folder))
            out.append(SweepRun(run.info.run_id, run.data.tags.get(HASH, ""), SeedResult.load(Path(local))))
    order = {m: i for i, m in enumerate(METHODS)}
    out.sort(key=lambda r: (order.get(r.result.spec.method.method, len(order)), r.result.spec.seed))
    return out


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """One bar per downloaded run would bury the caller's own output."""
    old = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = old


def load_sweep(experiment_name: str, tracking_uri: str | None = None, parent_run_id: str | None = None,
               dst: str | Path | None = None) -> list[SeedResult]:
    """The `SeedResult` of every finished trial of a sweep, ordered by method then seed."""
    return [r.result for r in load_sweep_runs(experiment_name, tracking_uri, parent_run_id, dst)]


def log_report(experiment_name: str, tracking_uri: str | None, folder: str | Path,
               parent_run_id: str | None = None, artifact_path: str = "report") -> str:
    """Attach a report folder to the sweep's parent run (under `report/`); returns the parent run id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MteError(f"report folder {folder} does not exist")
    client, _, parent = open_sweep(experiment_name, tracking_uri, parent_run_id)
    retry(client.log_artifacts, parent, str(folder), artifact_path)
    return parent
