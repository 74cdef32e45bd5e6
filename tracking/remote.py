"""The result store's remote (see `mte.store.Remote`): MLflow's artifact store, so that on a cluster the tracking
server is the one source of truth and each node's result store a cache.

Entries live as artifacts of one run, `result-store` in the experiment `mte-result-store` (keys are hashes of
everything that determines a result, data included, so any sweep of any experiment may share them): the folder
`<kind>/<key>/` holds the entry's files as in the local store, `MANIFEST.json` uploaded last. A fine-tune costs a
few KB of logits plus its bit-packed masks (MiniLM: 1.35 MB a mask).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient

from mte.store import MANIFEST
from tracking.trial_runs import retry

STORE_EXPERIMENT = "mte-result-store"
STORE_RUN = "result-store"
ROLE_STORE = "store"


def store_run(client: MlflowClient) -> str:
    """The id of the run that holds the shared store's entries (created on first use)."""
    exp = client.get_experiment_by_name(STORE_EXPERIMENT)
    experiment_id = exp.experiment_id if exp is not None else _create_experiment(client)
    runs = retry(client.search_runs, [experiment_id], f"tags.role = '{ROLE_STORE}'", max_results=1,
                 order_by=["attributes.start_time ASC"])
    if runs:
        return runs[0].info.run_id
    return retry(client.create_run, experiment_id, run_name=STORE_RUN, tags={
        "role": ROLE_STORE, "mlflow.note.content": "mte's result store: fine-tunes and seeds by hash, shared by "
                                                   "every node of a cluster (tracking/remote.py)"}).info.run_id


def _create_experiment(client: MlflowClient) -> str:
    try:
        return client.create_experiment(STORE_EXPERIMENT)
    except Exception:  # created by another process meanwhile
        return client.get_experiment_by_name(STORE_EXPERIMENT).experiment_id


class MlflowRemote:
    """`mte.store.Remote` over one MLflow run's artifacts."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id

    def fetch(self, kind: str, key: str, into: Path) -> bool:
        path = f"{kind}/{key}"
        names = {Path(a.path).name for a in retry(self.client.list_artifacts, self.run_id, path)}
        if MANIFEST not in names:  # absent, or still being uploaded
            return False
        with tempfile.TemporaryDirectory(prefix="mte-fetch-") as tmp:
            local = Path(retry(self.client.download_artifacts, self.run_id, path, tmp))
            for f in local.iterdir():
                shutil.move(str(f), into / f.name)
        return True

    def push(self, kind: str, key: str, folder: Path, files: list[str] | None = None) -> None:
        path = f"{kind}/{key}"
        names = sorted(files or (p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST))
        for name in [*(n for n in names if n != MANIFEST), MANIFEST]:
            retry(self.client.log_artifact, self.run_id, str(folder / name), path)
