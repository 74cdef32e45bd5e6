"""Reading a sweep back for the report stage: each finished trial's artifacts rebuilt as a `SeedResult`.

A trial run's artifact root is exactly a seed-result folder of the science core's store (see
`mte.results`), so `SeedResult.load` rebuilds it; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run

from mte.errors import MteError, first_line
from mte.methods import names as method_names
from mte.results import SeedResult
from mte.store import damage
from tracking.experiment import find_parent
from tracking.trial_runs import FINISHED, HASH, retry, trial_runs
from tracking.trial_runs import METHOD as METHOD_TAG
from tracking.trial_runs import SEED as SEED_TAG
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
    uri = resolve_tracking_uri(tracking_uri, must_exist=True)
    client = check_reachable(uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise MteError(f"no experiment {experiment_name!r} in {uri}")
    if parent_run_id in (None, "latest"):
        parent = find_parent(client, exp.experiment_id)
        if parent is None:
            raise MteError(f"experiment {experiment_name!r} has no sweep")
        parent_run_id = parent.info.run_id
    return client, exp.experiment_id, parent_run_id


def sweep_parents(experiment_name: str, tracking_uri: str | None, run_ids: tuple[str, ...] | None = None,
                  tasks: tuple[str, ...] | None = None) -> list[Run]:
    """The parent runs of the sweeps to report: the given ones, the latest of each task, or the latest sweep."""
    from mte.tasks import get_task

    client, experiment_id, latest = open_sweep(experiment_name, tracking_uri, None if run_ids else "latest")
    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                runs.append(retry(client.get_run, run_id))
            except Exception:  # MLflow raises its own and SQLAlchemy's errors for an unknown id
                raise MteError(f"no run {run_id!r} in {client.tracking_uri}") from None
        return runs
    if tasks:
        runs = []
        for task in tasks:
            run = find_parent(client, experiment_id, task=get_task(task).name)
            if run is None:
                raise MteError(f"experiment {experiment_name!r} has no sweep of task {task}")
            runs.append(run)
        return runs
    return [retry(client.get_run, latest)]


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
            local = Path(retry(client.download_artifacts, run.info.run_id, "", str(folder)))
            out.append(SweepRun(run.info.run_id, run.data.tags.get(HASH, ""), load_result(run, local)))
    order = {m: i for i, m in enumerate(method_names())}
    out.sort(key=lambda r: (order.get(r.result.spec.method.method, len(order)), r.result.spec.seed))
    return out


def load_result(run: Run, folder: Path) -> SeedResult:
    """A trial run's artifacts as a SeedResult, checked against their manifest: one line naming the run and the
    file if anything is damaged, its manifest included (the store's own entries heal themselves; a tracking store
    is not ours to fix)."""
    name = f"run {run.info.run_id} ({run.info.run_name})"
    problem = damage(folder)
    if problem is not None:
        raise MteError(f"{name}: its artifact {problem}; the recorded result is damaged (rerun the sweep after "
                       "deleting this run to record it again)")
    try:
        return SeedResult.load(folder)
    except (OSError, ValueError, KeyError, TypeError, EOFError, MteError) as e:
        raise MteError(f"{name}: its artifacts do not load ({first_line(e)})") from None


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


def report_metrics(analysis: Any) -> dict[str, float]:
    """A report's numbers as sweep-level metrics, named `<method>/<name>` so the runs table can sort and compare
    sweeps: every Table 1 column (single mean and std, ensemble, diff, Δ against each reference with its interval,
    both tests' p-values), the sparsity, mean diversity and mean mask IoU. Undefined values are left out."""
    out: dict[str, float] = {}
    t1 = analysis.table1.set_index("method")
    for method, row in t1.iterrows():
        for col, value in row.items():
            if col in ("seeds", "groups", "combinations") or col.endswith(("_mark", "_best")):
                continue
            if isinstance(value, bool | float | int) and value is not None and math.isfinite(float(value)):
                out[f"{method}/{col}"] = float(value)
    for frame, prefix in ((analysis.table2, ""), (analysis.overlap, "mask_")):
        if frame.empty:
            continue
        for _, row in frame.iterrows():
            for col, value in row.items():
                if col in ("method", "members", "masks", "pairs") or col.endswith("_undefined"):
                    continue
                if math.isfinite(float(value)):
                    out[f"{row['method']}/{prefix}{col}"] = float(value)
    return out


def log_report_metrics(client: MlflowClient, parent_run_id: str, analysis: Any) -> int:
    """Log `report_metrics` on the sweep's parent run (step 0, replacing earlier values); returns how many."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in report_metrics(analysis).items()]
    for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics a batch
        retry(client.log_batch, parent_run_id, metrics=metrics[start:start + 900])
    return len(metrics)


def sweep_frame(experiment: str = "mte", tracking_uri: str | None = None, run_id: str | None = None) -> Any:
    """One row per (method, seed) of a sweep (default: the experiment's latest): `run_id`, `run_name`, `status`,
    `method`, `seed`, then `params.<name>`, `metrics.<name>` (final values) and `tags.<name>`, as MLflow's own
    `search_runs` frames name them; ordered by method (the paper's order), then seed."""
    import pandas as pd

    client, experiment_id, parent = open_sweep(experiment, tracking_uri, run_id)
    order = {m: i for i, m in enumerate(method_names())}
    rows = []
    for run in trial_runs(client, experiment_id, parent):
        tags = run.data.tags
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
               "method": tags.get(METHOD_TAG), "seed": int(tags.get(SEED_TAG, -1))}
        row |= {f"params.{k}": v for k, v in run.data.params.items()}
        row |= {f"metrics.{k}": v for k, v in run.data.metrics.items()}
        row |= {f"tags.{k}": v for k, v in tags.items() if not k.startswith("mlflow.")}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.assign(_order=frame.method.map(lambda m: order.get(m, len(order))))
    return frame.sort_values(["_order", "seed"]).drop(columns="_order").reset_index(drop=True)


def report_frames(experiment: str = "mte", tracking_uri: str | None = None, run_id: str | None = None,
                  options: Any = None) -> dict[str, Any]:
    """The report's tables as DataFrames, recomputed from the sweep's recorded artifacts: `table1` (ensembles,
    tests, marks), `tests` (both tests, every comparison), `table2` (diversity), `overlap` (mask IoU), `curves`
    (gain versus members), `calibration` (NLL, ECE, Brier) and `reliability` (its bins; both empty for
    regression)."""
    from mte.analysis import ResultSet, analyse

    results = load_sweep(experiment, tracking_uri, run_id)
    if not results:
        raise MteError(f"the sweep of experiment {experiment!r} has no finished trials yet")
    a = analyse(ResultSet.from_seed_results(results), options)
    return {"table1": a.table1, "tests": a.tests, "table2": a.table2, "overlap": a.overlap, "curves": a.curves,
            "calibration": a.calibration, "reliability": a.reliability}
