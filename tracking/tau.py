"""What `mte tune-tau` records in MLflow, and reading its best τ back (`mte sweep --tau-from-tuning TASK`).

A tuning is one parent run (tag `mte.kind=tune-tau`) with one nested run per τ sample (`mte.kind=tau-sample`).
Parents are never reopened: each tuning is its own record. The parent ends FINISHED only if at least one sample
ran all its rounds; its `best_tau` (tag and param) is the τ of the finished sample with the highest
`final_objective`, ties going to the smaller τ.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TunedTau:
    """A τ taken from a recorded tuning, and where it came from (what a sweep records as its τ source)."""

    tau: float
    run_id: str  # the tune-tau parent run
    task: str  # the task it was tuned on
    method: str
    tune_on: str  # train-holdout or dev
    description: str  # one line for people

    @classmethod
    def of(cls, run: Run) -> TunedTau:
        t = run.data.tags
        where = "DEV (not held out)" if t.get(TUNE_ON) == "dev" else t.get(TUNE_ON, "?")
        metric = run.data.params.get("objective_metric", t.get(OBJECTIVE, "?"))
        text = (f"τ = {float(t[BEST_TAU]):.4g} from tune-tau run {run.info.run_id} ({run.info.run_name}; {metric} "
                f"{t.get(BEST_OBJECTIVE, '?')} on {where}; best sample run {t.get(BEST_RUN, '?')})")
        return cls(float(t[BEST_TAU]), run.info.run_id, t.get(TASK, "?"), t.get(METHOD, "?"), t.get(TUNE_ON, "?"),
                   text)


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def tuned_tau_at(uri: str, source: str, model: str, methods: tuple[str, ...]) -> list[TunedTau]:
    """`tuned_tau` read from the tracking store at `uri` (resolved) before a sweep starts anything: a sqlite
    database that does not exist yet holds no tuning, and is not created to find that out."""
    from tracking.uri import check_reachable, sqlite_path

    path = sqlite_path(uri)
    return tuned_tau(None if path is not None and not path.exists() else check_reachable(uri), source, model,
                     methods)


def tuned_tau(client: MlflowClient | None, source: str, model: str, methods: tuple[str, ...]) -> list[TunedTau]:
    """The tuned τ of each regularised method in `methods`. `source` names the task the tuning ran on (its newest
    finished tuning for `model` and the method is used) or the tuning runs themselves (a comma list of run ids:
    what a resumed sweep uses, so that a newer tuning cannot change it). MteError (one line) if one is missing.
    No client: a store that does not exist, so holds no tuning."""
    from mte import methods as registry
    from mte.tasks import get_task

    regularised = [m for m in methods if registry.get(m).uses_tau]
    if not regularised:
        raise MteError(f"--tau-from-tuning: none of the methods ({', '.join(methods)}) uses τ")
    ids = [i.strip() for i in source.split(",") if i.strip()]
    if ids and all(RUN_ID.match(i) for i in ids):
        if client is None:
            raise MteError(f"--tau-from-tuning: no tracking database holds run {ids[0]}")
        by_method = {}
        for run_id in ids:
            run = retry(client.get_run, run_id)
            if run.data.tags.get(KIND) != KIND_TUNING or BEST_TAU not in run.data.tags:
                raise MteError(f"--tau-from-tuning: run {run_id} is not a finished `mte tune-tau` with a best τ")
            by_method[run.data.tags.get(METHOD)] = run
        missing = [m for m in regularised if m not in by_method]
        if missing:
            raise MteError(f"--tau-from-tuning: the runs given tune no τ for {', '.join(missing)}")
        return [TunedTau.of(by_method[m]) for m in regularised]
    task = get_task(source).name
    found = []
    for m in regularised:
        run = find_best_tuning(client, task, model, m) if client is not None else None
        if run is None:
            raise MteError(f"no finished `mte tune-tau` for task {task}, model {model}, method {m}; run "
                           f"`mte tune-tau --task {task} --model {model} --method {m}` first")
        found.append(TunedTau.of(run))
    return found
