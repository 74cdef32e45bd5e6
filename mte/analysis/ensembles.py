"""Ensembles of a method's members, every combination of one size evaluated in one array operation.

Protocol (the paper's): the members, in seed order, are split into `groups` groups (20 seeds → 2×10);
within each group every combination of m members is an ensemble whose output is the mean of its
members' class probabilities (classification) or scores (regression). A method's ensemble score is the
mean over a group's combinations, then over groups, so each group weighs the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from mte.analysis.resultset import ResultSet
from mte.metrics import predictions, score
from mte.tasks import TaskSpec

_GATHER_BUDGET = 1 << 25  # floats gathered per chunk of combinations: bounds memory on big dev sets


def member_outputs(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """What members average: softmax probabilities (classification) or the raw scores (regression)."""
    if task.is_regression:
        return logits
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def split_groups(n_members: int, groups: int) -> list[np.ndarray]:
    """Member indices of each group: consecutive in seed order, sizes differing by at most one."""
    return [g for g in np.array_split(np.arange(n_members), groups) if len(g)]


def protocol_problem(method: str, n_members: int, groups: int, sizes: Sequence[int]) -> str | None:
    """Why `method` cannot run the whole protocol (None if it can): a message, not an exception,
    so a partly finished sweep still reports everything else."""
    smallest = min((len(g) for g in split_groups(n_members, groups)), default=0)
    if n_members >= groups and smallest >= max(sizes):
        return None
    return (f"{method} has {n_members} seed(s): {groups} group(s) of at least {max(sizes)} are needed for "
            f"{max(sizes)}-member ensembles; its ensemble columns are left empty (ask for fewer groups or "
            f"smaller ensembles to use it)")


@dataclass(frozen=True)
class Combos:
    """Predictions of ensembles (one row each) and the group each came from."""

    pred: np.ndarray  # (C, n) class ids or regression scores
    group: np.ndarray  # (C,) group index

    @property
    def weights(self) -> np.ndarray:
        """(C,) weights of the protocol's mean: uniform within a group, each group summing to 1/G."""
        counts = np.bincount(self.group)
        return 1.0 / (np.count_nonzero(counts) * counts[self.group])

    @staticmethod
    def concat(parts: Sequence[Combos]) -> Combos:
        return Combos(np.concatenate([p.pred for p in parts]), np.concatenate([p.group for p in parts]))


def ensemble_predictions(task: TaskSpec, outputs: np.ndarray, groups: int, size: int,
                         budget: int = _GATHER_BUDGET) -> Combos:
    """Every `size`-member combination within each group of `outputs` (s, n, k), as predictions.
    `budget`: most floats gathered at once (combinations are taken in chunks that fit)."""
    preds, group_ids = [], []
    n, k = outputs.shape[1:]
    for g, members in enumerate(split_groups(len(outputs), groups)):
        idx = np.array(list(combinations(members, size)), dtype=np.intp).reshape(-1, size)  # (C, m)
        chunk = max(1, budget // (size * n * k))
        for start in range(0, len(idx), chunk):
            mean = outputs[idx[start:start + chunk]].mean(axis=1)  # (c, m, n, k) → (c, n, k)
            preds.append(predictions(task, mean))
        group_ids.append(np.full(len(idx), g))
    if not preds:
        return Combos(np.empty((0, n)), np.empty(0, dtype=np.intp))
    return Combos(np.concatenate(preds), np.concatenate(group_ids))


@dataclass
class MethodEnsembles:
    """One method's single models and all its ensembles, predictions and scores."""

    method: str
    seeds: list[int]
    single: dict[str, np.ndarray]  # metric → (s,) score of each member
    combos: dict[int, Combos]  # size → its ensembles (sizes the groups can form)
    scores: dict[int, dict[str, np.ndarray]]  # size → metric → (C,)
    problem: str | None  # why the full protocol could not run; None if it could

    def pooled(self, sizes: Sequence[int]) -> tuple[Combos, dict[str, np.ndarray]] | None:
        """All ensembles of the protocol's sizes together (None unless every size was formed)."""
        if self.problem is not None or any(m not in self.combos for m in sizes):
            return None
        combos = Combos.concat([self.combos[m] for m in sizes])
        scores = {k: np.concatenate([self.scores[m][k] for m in sizes]) for k in self.single}
        return combos, scores

    def ensemble_score(self, sizes: Sequence[int]) -> dict[str, float]:
        """The protocol's ensemble score per metric (nan where the protocol could not run)."""
        pooled = self.pooled(sizes)
        if pooled is None:
            return {k: float("nan") for k in self.single}
        combos, scores = pooled
        return {k: float(combos.weights @ v) for k, v in scores.items()}


def evaluate(rs: ResultSet, method: str, groups: int = 2, sizes: Sequence[int] = (2, 3, 4, 5),
             extra_sizes: Sequence[int] = ()) -> MethodEnsembles:
    """Single models and ensembles of `sizes` (plus `extra_sizes`, e.g. 1 for curves) where they fit."""
    outputs = member_outputs(rs.task, rs.logits(method))
    single = score(rs.task, predictions(rs.task, outputs), rs.labels)
    fits = min(len(g) for g in split_groups(len(outputs), groups)) if len(outputs) >= groups else 0
    combos, scores = {}, {}
    for m in sorted(set(sizes) | set(extra_sizes)):
        if 1 <= m <= fits:
            combos[m] = ensemble_predictions(rs.task, outputs, groups, m)
            scores[m] = score(rs.task, combos[m].pred, rs.labels)
    return MethodEnsembles(method, rs.seeds(method), single, combos, scores,
                           protocol_problem(method, len(outputs), groups, sizes))
