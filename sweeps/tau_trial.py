"""What runs inside one `mte tune-tau` trial: K seeds of one τ, with the objective reported at every milestone.

- RANDOM-LT: seeds are independent; their `seed_rounds` generators are advanced together, one fine-tune each,
  and milestone r (r = 0..rounds; the last is the ticket) scores the K seeds' round-r outputs.
- ACTIVE-LT: seed i is regularised towards the final masks of seeds < i, so seeds run one after another.
  Seed 0 has no earlier masks and hence no regulariser: it is the same for every τ (run once, then reused
  from the store) and reports nothing. Milestones are the (seed i ≥ 1, round r) fine-tunes in order, scoring
  seeds 0..i at round r; the last one is the full K-seed ensemble of tickets.

Objective: the headline metric (`task.metrics[0]`) of the ensemble (mean softmax probabilities, as in
`mte.analysis.ensembles`) or the mean single score. A seed's last fine-tune is reported only after its result
is stored (`seed_rounds` yields it with the result), and the sample's MLflow run is closed before the last
report: ASHA stops a trial at its last report (and at any earlier one), after which nothing in the trial runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from ray import tune
from rich.console import Console

from mte import plugins
from mte.analysis.ensembles import member_outputs
from mte.data import eval_labels, resolve_data_dir
from mte.errors import MteError
from mte.hparams import RunSpec
from mte.lottery import RoundEvent, seed_rounds
from mte.methods import dry
from mte.metrics import task_metrics
from mte.store import Store
from mte.tasks import TaskSpec
from sweeps.trial import _use_assigned_devices, trial_store
from tracking import tau as tracked

console = Console(stderr=True, soft_wrap=True)  # global: Tune pickles its callbacks; a Console holds a lock
Milestone = tuple[int, list[RoundEvent]]  # (IMP round, the events of the seeds scored at it)


def tau_trial(config: dict[str, Any], shared: dict[str, Any]) -> None:
    """Ray Tune trainable: `config["tau"]` from the search algorithm, `shared` the same for every sample."""
    _use_assigned_devices(shared["cpus_per_trial"])
    plugins.load_sources(shared.get("plugins", []))
    tau = float(config["tau"])
    spec = RunSpec.from_dict(shared["spec"]).with_method(tau=tau).resolved()
    task = spec.task
    labels = eval_labels(task, resolve_data_dir(shared["data_dir"]), spec.data)  # what the logits score
    client = MlflowClient(shared["tracking_uri"])
    tags = {k: shared[k] for k in ("objective", "tune_on")} | {
        tracked.TASK: task.name, tracked.MODEL: spec.model.model, tracked.METHOD: spec.method.method,
        "ray_trial": tune.get_context().get_trial_id() or ""}
    run_id = tracked.open_sample(client, shared["experiment_id"], shared["parent_run_id"], tau, tags,
                                 {"seeds": shared["seeds"]})
    total, step = shared["milestones"], -1
    for step, (imp_round, events) in enumerate(milestones(spec, trial_store(shared, client), shared["data_dir"],
                                                          shared["seeds"])):
        split = "dev" if shared["tune_on"] == "dev" else "holdout"
        values = objective_values(task, shared["objective"], [e.dev_logits for e in events], labels, split)
        values |= {"sparsity": float(np.mean([e.record.sparsity for e in events])), "imp_round": imp_round,
                   "seeds_scored": len(events), "milestones_done": step + 1}
        tracked.log_step(client, run_id, step, values)
        last = step == total - 1
        if last:
            tracked.log_step(client, run_id, 0, {tracked.FINAL: values["objective"]})
            tracked.close(client, run_id, tracked.FINISHED)
        tune.report({"objective": values["objective"], "step": step, "completed": last, "run_id": run_id})
    if step != total - 1:  # the schedule and the science core disagree on the number of fine-tunes
        raise RuntimeError(f"expected {total} milestones, got {step + 1}")


def milestones(spec: RunSpec, store: Store, data_dir: str | Path | None, seeds: int) -> Iterator[Milestone]:
    """The trial's milestones in order; every seed's result is stored before its last fine-tune is yielded."""
    method = spec.method.declared
    if method.chain:
        rounds: list[list[RoundEvent]] = []  # per seed: its events so far
        masks = []
        for s in range(seeds):
            rounds.append([])
            for event in _scored(seed_rounds(dataclasses.replace(spec, seed=s), store, data_dir, list(masks))):
                rounds[s].append(event)
                if s > 0:  # seed 0 has no earlier masks: no regulariser (ACTIVE-LT's), the same for every τ
                    yield event.index, [rounds[j][event.index] for j in range(s + 1)]
                if event.result is not None:
                    masks.append(event.result.mask)
        return
    gens = [_scored(seed_rounds(dataclasses.replace(spec, seed=s), store, data_dir)) for s in range(seeds)]
    for r in range(len(dry.plan(method, spec.method, 0))):
        yield r, [next(g) for g in gens]  # seeds in order, so concurrent trials take store locks in one order


def _scored(events: Iterator[RoundEvent]) -> Iterator[RoundEvent]:
    for event in events:
        if event.dev_logits is None:
            raise MteError(f"fine-tune {event.record.key} has no stored dev logits to score")
        yield event


def objective_values(task: TaskSpec, objective: str, logits: list[np.ndarray], labels: np.ndarray,
                     split: str = "holdout") -> dict[str, float]:
    """`<split>_ensemble_<metric>` (the mean of the members' probabilities or scores), `<split>_single_<metric>`
    (the mean over members) and `objective`: the chosen one of the headline metric (`task.metrics[0]`). `split`
    says where they were measured: the train holdout, or dev."""
    outputs = np.stack([member_outputs(task, x) for x in logits])  # (members, n, k)
    if outputs.shape[1] != len(labels):
        raise MteError(f"{outputs.shape[1]} outputs for {len(labels)} labels: the stored logits do not match "
                       "this data")
    single = task_metrics(task, outputs, labels)  # metric → (members,)
    ensemble = task_metrics(task, outputs.mean(0), labels)
    values = {f"{split}_single_{m}": float(np.mean(single[m])) for m in task.metrics}
    values |= {f"{split}_ensemble_{m}": float(ensemble[m]) for m in task.metrics}
    values["objective"] = values[f"{split}_{objective}_{task.metrics[0]}"]
    return values


class TauProgress(tune.Callback):
    """One line per sample as it finishes, is stopped early, or fails; remembers which runs ASHA stopped."""

    def __init__(self, milestones: int):
        self.milestones = milestones
        self.errors: dict[str, str] = {}  # trial id → error line
        self.stopped: dict[str, int] = {}  # sample run id → milestones it reported

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        tau = trial.config.get("tau", math.nan)
        if r.get("completed"):
            console.print(f"[green]done[/]    τ {tau:<9.3g} objective {r['objective']:.4f}", highlight=False)
        elif "run_id" in r:
            done = int(r.get("step", -1)) + 1
            self.stopped[r["run_id"]] = done
            console.print(f"[yellow]stopped[/] τ {tau:<9.3g} after {done}/{self.milestones} milestones "
                               f"(objective {r['objective']:.4f})", highlight=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from sweeps.live import trial_error

        self.errors[trial.trial_id] = trial_error(trial)
        console.print(f"[red]failed[/]  τ {trial.config.get('tau', math.nan):<9.3g} "
                           f"{self.errors[trial.trial_id]}", highlight=False)
