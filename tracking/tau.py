"""What `mte tune-tau` records in MLflow, and reading its best τ back (`mte sweep … --tau best`).

A tuning is one parent run (tag `mte.kind=tune-tau`) with one nested run per τ sample (`mte.kind=tau-sample`).
Parents are never reopened: each tuning is its own record. The parent ends FINISHED only if at least one sample
ran all its rounds; its `best_tau` (tag and param) is the τ of the finished sample with the highest
`final_objective`, ties going to the smaller τ.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run

from mte.errors import MteError
from tracking.trial_runs import FINISHED, MODEL, PARENT_TAG, TASK, retry

KIND = "mte.kind"
KIND_TUNING, KIND_SAMPLE = "tune-tau", "tau-sample"
METHOD, TUNE_ON, OBJECTIVE = "method", "tune_on", "objective"
BEST_TAU, BEST_OBJECTIVE, BEST_RUN = "best_tau", "best_objective", "best_run_id"
FINAL = "final_objective"  # metric of a sample that ran every round
STOPPED_AT = "stopped_at_step"  # tag of a sample the scheduler stopped early (status KILLED)


def open_tuning(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str],
                params: dict[str, Any]) -> str:
    run = retry(client.create_run, experiment_id, run_name=name, tags=tags | {KIND: KIND_TUNING})
    retry(client.log_batch, run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def open_sample(client: MlflowClient, experiment_id: str, parent_run_id: str, tau: float, tags: dict[str, str],
                params: dict[str, Any]) -> str:
    run = retry(client.create_run, experiment_id, run_name=f"tau-{tau:.3g}",
                tags=tags | {KIND: KIND_SAMPLE, PARENT_TAG: parent_run_id})
    retry(client.log_batch, run.info.run_id, params=[Param(k, str(v)) for k, v in ({"tau": tau} | params).items()])
    return run.info.run_id


def log_step(client: MlflowClient, run_id: str, step: int, metrics: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    retry(client.log_batch, run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def samples(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    query = f"tags.`{KIND}` = '{KIND_SAMPLE}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    return list(retry(client.search_runs, [experiment_id], query, max_results=10_000))


def best_sample(runs: list[Run]) -> Run | None:
    """The finished sample with the highest final objective (ties: the smaller τ)."""
    done = [r for r in runs if r.info.status == FINISHED and not math.isnan(r.data.metrics.get(FINAL, math.nan))]
    if not done:
        return None
    return max(done, key=lambda r: (r.data.metrics[FINAL], -float(r.data.params["tau"])))


def record_best(client: MlflowClient, parent_run_id: str, best: Run) -> None:
    values = {BEST_TAU: best.data.params["tau"], BEST_OBJECTIVE: f"{best.data.metrics[FINAL]:.6g}",
              BEST_RUN: best.info.run_id}
    for k, v in values.items():
        retry(client.set_tag, parent_run_id, k, v)
    retry(client.log_batch, parent_run_id, params=[Param(k, v) for k, v in values.items()])


def close(client: MlflowClient, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    for k, v in (tags or {}).items():
        retry(client.set_tag, run_id, k, v)
    retry(client.set_terminated, run_id, status)


def find_best_tuning(client: MlflowClient, task: str, model: str, method: str) -> Run | None:
    """The newest FINISHED tuning of (task, model, method) that recorded a best τ, in any active experiment."""
    experiments = [e.experiment_id for e in retry(client.search_experiments, max_results=50_000)]
    if not experiments:
        return None
    query = (f"tags.`{KIND}` = '{KIND_TUNING}' and tags.{TASK} = '{task}' and tags.{MODEL} = '{model}' "
             f"and tags.{METHOD} = '{method}' and attributes.status = '{FINISHED}'")
    runs = retry(client.search_runs, experiments, query, max_results=1000, order_by=["attributes.start_time DESC"])
    return next((r for r in runs if BEST_TAU in r.data.tags), None)


def resolve_best_tau(tracking_uri: str | None, task: str, model: str, method: str) -> tuple[float, str]:
    """(best τ, id of the tuning parent run that recorded it); MteError if no tuning matches."""
    from mte.tasks import get_task
    from tracking.uri import check_reachable, resolve_tracking_uri

    task = get_task(task).name
    uri = resolve_tracking_uri(tracking_uri)
    run = find_best_tuning(check_reachable(uri), task, model, method)
    if run is None:
        raise MteError(f"no finished `mte tune-tau` for task {task}, model {model}, method {method} in {uri}; "
                       f"run `mte tune-tau --task {task} --model {model} --method {method}` first")
    return float(run.data.tags[BEST_TAU]), run.info.run_id


def describe(run: Run) -> str:
    """One line naming where a best τ came from, flagging a τ tuned on dev (then dev is not held out)."""
    t = run.data.tags
    where = "DEV (not held out)" if t.get(TUNE_ON) == "dev" else t.get(TUNE_ON, "?")
    metric = run.data.params.get("objective_metric", t.get(OBJECTIVE, "?"))
    return (f"τ = {float(t[BEST_TAU]):.4g} from tune-tau run {run.info.run_id} ({run.info.run_name}; {metric} "
            f"{t.get(BEST_OBJECTIVE, '?')} on {where}; best sample run {t.get(BEST_RUN, '?')})")


def tau_for_sweep(value: str | float, tracking_uri: str | None, task: str, model: str,
                  methods: tuple[str, ...]) -> tuple[float, str | None]:
    """A sweep's `--tau`: a number, or 'best' → the tuned τ of its regularised method(s), with a line saying
    where it came from (None for a number). One τ serves the whole sweep, so methods tuned to different values
    must be swept separately."""
    if str(value).strip().lower() != "best":
        try:
            return float(value), None
        except ValueError:
            raise MteError(f"--tau must be a number or 'best', got {value!r}") from None
    from mte.hparams import REGULARISED_METHODS
    from mte.tasks import get_task
    from tracking.uri import check_reachable, resolve_tracking_uri

    regularised = [m for m in methods if m in REGULARISED_METHODS]
    if not regularised:
        raise MteError(f"--tau best: none of the methods ({', '.join(methods)}) uses τ")
    uri = resolve_tracking_uri(tracking_uri)
    client = check_reachable(uri)
    task = get_task(task).name
    found = {}
    for m in regularised:
        run = find_best_tuning(client, task, model, m)
        if run is None:
            raise MteError(f"--tau best: no finished `mte tune-tau` for task {task}, model {model}, method {m} "
                           f"in {uri}; run `mte tune-tau --task {task} --model {model} --method {m}` first")
        found[m] = run
    taus = {m: float(r.data.tags[BEST_TAU]) for m, r in found.items()}
    if len(set(taus.values())) > 1:
        listed = ", ".join(f"{m} {t:.4g}" for m, t in taus.items())
        raise MteError(f"--tau best: the tuned τ differs by method ({listed}); sweep them separately with --methods")
    return next(iter(taus.values())), "; ".join(f"{m}: {describe(r)}" for m, r in found.items())
