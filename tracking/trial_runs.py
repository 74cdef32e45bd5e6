"""One nested MLflow run per (method, seed): tags, params, per-round and final metrics, the result folder.

A run is created only once its seed's result exists and is marked FINISHED after its artifacts are
uploaded, so a FINISHED run always has complete artifacts; a run left unfinished by a crash while logging
is deleted when the same (sweep, hash) is logged again, so a sweep never holds two runs of one trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, ViewType

from mte.errors import MteError, first_line
from mte.hparams import RunSpec
from mte.masks import Mask
from mte.results import SeedResult
from mte.store import MANIFEST, sha256
from tracking import provenance

PARENT_TAG = "mlflow.parentRunId"
ROLE, SWEEP, TASK, METHOD, SEED, MODEL, HASH, RESULT_KEY = (
    "role", "sweep", "task", "method", "seed", "model", "hash", "result_key")
ROLE_SWEEP, ROLE_TRIAL = "sweep", "trial"
RAN_ON = "ran_on"  # where the seed's fine-tunes ran (device, threads, torch): what bit-for-bit reruns need
FINISHED = "FINISHED"
MASK_FILE = "mask.safetensors"  # a seed result's final mask (`mte.results`)

T = TypeVar("T")


def retry(fn: Callable[..., T], *args: Any, attempts: int = 6, **kwargs: Any) -> T:
    """Call `fn`, retrying while a sqlite store is locked by another trial's write."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if "locked" not in str(e) or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


def search(client: MlflowClient, experiment_id: str, filter_string: str,
           order_by: list[str] | None = None) -> Iterator[Run]:
    """All active runs matching `filter_string`, following page tokens."""
    token = None
    while True:
        page = retry(client.search_runs, [experiment_id], filter_string, ViewType.ACTIVE_ONLY, 1000,
                     order_by, token)
        yield from page
        token = page.token
        if not token:
            return


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, unit_hash: str | None = None
               ) -> list[Run]:
    query = f"tags.{ROLE} = '{ROLE_TRIAL}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if unit_hash is not None:
        query += f" and tags.{HASH} = '{unit_hash}'"
    return list(search(client, experiment_id, query))


def finished_hashes(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """hash → run id of the sweep's FINISHED trial runs (what a rerun skips)."""
    return {r.data.tags[HASH]: r.info.run_id for r in trial_runs(client, experiment_id, parent_run_id)
            if r.info.status == FINISHED and HASH in r.data.tags}


def recorded_mask(client: MlflowClient, run_id: str) -> tuple[Mask | None, str | None]:
    """A FINISHED trial's final mask (what an ACTIVE-LT chain needs of a seed recorded earlier), checked against
    the manifest recorded with it: (mask, None), or (None, why it is damaged) for the caller to recompute it."""
    with tempfile.TemporaryDirectory(prefix="mte-mask-") as tmp:
        try:
            manifest = Path(retry(client.download_artifacts, run_id, MANIFEST, tmp))
            digest = json.loads(manifest.read_text())["files"][MASK_FILE]
        except Exception as e:  # MLflow raises its own types for a missing artifact
            return None, f"has no readable {MANIFEST} listing {MASK_FILE} ({type(e).__name__})"
        path = Path(retry(client.download_artifacts, run_id, MASK_FILE, tmp))
        if sha256(path) != digest:
            return None, f"{MASK_FILE} does not match its checksum"
        try:
            return Mask.load(path), None
        except (OSError, ValueError, MteError) as e:
            return None, f"{MASK_FILE} does not load ({first_line(e)})"


def trial_tags(result: SeedResult, sweep_hash: str, unit_hash: str, parent_run_id: str) -> dict[str, str]:
    spec = result.spec
    reused = bool(result.rounds) and all(r.reused for r in result.rounds)
    ran_on = list(dict.fromkeys(r.ran_on for r in result.rounds if r.ran_on))  # reused ones may have run elsewhere
    tags = {PARENT_TAG: parent_run_id, ROLE: ROLE_TRIAL, SWEEP: sweep_hash, TASK: spec.data.task,
            METHOD: spec.method.method, SEED: str(spec.seed), MODEL: spec.model.model, HASH: unit_hash,
            RESULT_KEY: result.key, "data_fingerprint": result.data_fingerprint, "reused": str(reused).lower()}
    if ran_on:
        tags[RAN_ON] = "; ".join(ran_on)
    return tags | provenance.tags("mte sweep (trial)")


def trial_params(spec: RunSpec) -> dict[str, Any]:
    """The hyperparameters that determine this run's result: those its method reads (τ, sparsity and rounds only
    for *-LT, the bagging fraction only for BAGGING) and a plugin method's own parameters; the target sparsity is
    a param, the measured one a metric."""
    out = {"seed": spec.seed, "method": spec.method.method}
    for part in (spec.data, spec.model, spec.train):
        out |= dataclasses.asdict(part)
    for name in spec.method.relevant_fields():
        if name != "method":
            out["target_sparsity" if name == "sparsity" else name] = getattr(spec.method, name)
    method = spec.method.declared
    return out | {p.name: spec.method.param(method, p.name) for p in method.params}


def result_metrics(result: SeedResult, now_ms: int, prefix: str = "dev_") -> list[Metric]:
    """Curves across all fine-tunes of the seed, so the IMP rounds read as one line: `train_loss` per epoch and
    `dev_<metric>` at each epoch that scored dev (the last of each fine-tune; every epoch with `--epoch-curves`)
    (step = epoch counted across fine-tunes; the last point is the final model) and
    `train_loss_steps` every LOSS_WINDOW optimizer steps (step = optimizer step across fine-tunes). Per fine-tune
    (step = round; the last is the ticket): `round/dev_<metric>`, `round/train_loss`, `round/sparsity`,
    `round/wall_s`. Final: the measured `sparsity`, `compute_s` (every fine-tune's original compute time, reused
    ones included), `elapsed_s`, `reused_fine_tunes`."""
    from mte.training import LOSS_WINDOW

    out: list[Metric] = []
    epoch = steps = 0
    for r, record in enumerate(result.rounds):
        for e in record.epochs:
            epoch += 1
            for k, v in e.items():
                if k != "epoch":
                    out.append(Metric(k if k == "train_loss" else f"{prefix}{k}", float(v), now_ms, epoch))
        for i, loss in enumerate(record.loss_trace):
            out.append(Metric("train_loss_steps", float(loss), now_ms, steps + min((i + 1) * LOSS_WINDOW,
                                                                                     record.steps)))
        steps += record.steps
        values = {(k if k == "train_loss" else f"{prefix}{k}"): v for k, v in record.metrics.items()}
        values |= {"sparsity": record.sparsity, "wall_s": record.wall_s}
        out += [Metric(f"round/{k}", float(v), now_ms, r) for k, v in values.items()]
    final = {"sparsity": result.mask.sparsity, "compute_s": result.wall_s, "elapsed_s": result.elapsed_s,
             "reused_fine_tunes": sum(r.reused for r in result.rounds)}
    return out + [Metric(k, float(v), now_ms, 0) for k, v in final.items()]


def open_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, *, sweep_hash: str, unit_hash: str,
                   spec: RunSpec, start_ms: int) -> str:
    """A trial's run, opened before its result exists (RUNNING; see `log_seed_result`'s `run_id`)."""
    for run in trial_runs(client, experiment_id, parent_run_id, unit_hash):
        if run.info.status != FINISHED:
            retry(client.delete_run, run.info.run_id)  # an earlier attempt's
    tags = {PARENT_TAG: parent_run_id, ROLE: ROLE_TRIAL, SWEEP: sweep_hash, TASK: spec.data.task,
            METHOD: spec.method.method, SEED: str(spec.seed), MODEL: spec.model.model, HASH: unit_hash}
    return retry(client.create_run, experiment_id, start_time=start_ms, tags=tags,
                 run_name=f"{spec.method.method}-s{spec.seed}").info.run_id


def log_seed_result(client: MlflowClient, experiment_id: str, parent_run_id: str, *, sweep_hash: str,
                    unit_hash: str, result: SeedResult, folder: Path, start_ms: int, data_dir: Path | None = None,
                    run_id: str | None = None, extra_tags: dict[str, str] | None = None) -> str:
    """Record one seed as a FINISHED nested run (or return the one already there); returns its run id. `run_id`:
    a run this trial opened already (to sample system metrics while it trained)."""
    for run in trial_runs(client, experiment_id, parent_run_id, unit_hash):
        if run.info.status == FINISHED:
            return run.info.run_id
        if run.info.run_id != run_id:
            retry(client.delete_run, run.info.run_id)  # left half-logged by a crash
    spec = result.spec
    tags = trial_tags(result, sweep_hash, unit_hash, parent_run_id) | (extra_tags or {})
    if run_id is None:
        run_id = retry(client.create_run, experiment_id, start_time=start_ms, tags=tags,
                       run_name=f"{spec.method.method}-s{spec.seed}").info.run_id
    else:
        for k, v in tags.items():
            retry(client.set_tag, run_id, k, v)
    try:
        logging_start = time.perf_counter()
        params = [Param(k, str(v)) for k, v in trial_params(spec).items()]
        metrics = result_metrics(result, int(time.time() * 1000))
        for start in range(0, max(len(metrics), 1), 900):  # MLflow takes at most 1000 metrics a batch
            retry(client.log_batch, run_id, metrics=metrics[start:start + 900],
                  params=params if start == 0 else [])
        if result.data_sizes:
            retry(client.log_inputs, run_id, datasets=provenance.dataset_inputs(
                spec.task, data_dir, result.data_fingerprint, result.data_sizes, holdout=spec.data.holdout > 0))
        retry(client.log_artifacts, run_id, str(folder))
        retry(client.log_batch, run_id, metrics=[
            Metric("log_s", time.perf_counter() - logging_start, int(time.time() * 1000), 0)])
        retry(client.set_terminated, run_id, FINISHED)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more than this cleanup
            client.set_terminated(run_id, "FAILED")
        remove_local_artifacts(client, run_id)
        raise
    return run_id


def remove_local_artifacts(client: MlflowClient, run_id: str) -> None:
    """Delete a run's artifact folder where it is a local path (the default beside a sqlite store): an upload cut
    short (a full disk) leaves part of a result there. Nothing reads a run that is not FINISHED, and the next
    attempt deletes the run itself; remote artifact stores keep what they received until `mlflow gc`."""
    with contextlib.suppress(Exception):  # best effort: the error that stopped the upload is what the user needs
        uri = urllib.parse.urlparse(client.get_run(run_id).info.artifact_uri)
        if uri.scheme in ("", "file"):
            shutil.rmtree(urllib.request.url2pathname(uri.path), ignore_errors=True)
