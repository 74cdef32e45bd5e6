"""Ensembles of a method's members, as the paper forms and scores them, every combination in a few array operations.

Protocol (paper, Sec. 3): seeds are grouped by id, 0–9 and 10–19 (`GROUP_SIZE`; a missing seed leaves a smaller
group). Within a group every combination of m members is an ensemble whose output is the mean of its members'
class probabilities (classification; the mean of logits is an option) or scores (regression). Table 1's
ensemble score is the mean over a group's 5-member combinations, then over groups, so each group weighs the
same; sizes 1..5 feed the gain-versus-members curve (Fig. 3).

A set of combinations is a (C, S) membership matrix, so every ensemble's mean output is one matrix product,
and so is every ensemble of a batch of reshuffled member sets (the seed-level permutation test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from mte.analysis.resultset import ResultSet
from mte.methods import GROUP_SIZE
from mte.metrics import binary_from_counts, predictions, score
from mte.tasks import TaskSpec

PAPER_SIZE = 5  # Table 1: every 5-member combination within a group
_BUDGET = 1 << 24  # float64 values of ensemble outputs held at once: bounds memory on big dev sets


def member_outputs(task: TaskSpec, logits: np.ndarray, combine: str = "probabilities") -> np.ndarray:
    """What members average (float64): softmax probabilities or logits (classification), raw scores (regression)."""
    logits = np.asarray(logits, dtype=np.float64)
    if task.is_regression or combine == "logits":
        return logits
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def seed_groups(seeds: Sequence[int]) -> list[np.ndarray]:
    """Member indices of each group (seeds 0–9, 10–19, ...; `seeds` in member order), non-empty groups only."""
    ids = np.asarray(seeds) // GROUP_SIZE
    return [np.flatnonzero(ids == g) for g in np.unique(ids)]


@dataclass(frozen=True)
class Combinations:
    """Ensembles as a (C, S) membership matrix over S members, and the group each came from."""

    members: np.ndarray  # (C, S) bool
    group: np.ndarray  # (C,) group index

    def __len__(self) -> int:
        return len(self.group)

    @classmethod
    def within(cls, groups: Sequence[np.ndarray], n_members: int, size: int) -> Combinations:
        """Every `size`-member combination within each group that has that many members."""
        rows, gid = [], []
        for g, members in enumerate(groups):
            for c in combinations(members, size):
                row = np.zeros(n_members, dtype=bool)
                row[list(c)] = True
                rows.append(row)
                gid.append(g)
        return cls(np.array(rows, dtype=bool).reshape(-1, n_members), np.array(gid, dtype=np.intp))

    @staticmethod
    def concat(parts: Sequence[Combinations]) -> Combinations:
        return Combinations(np.concatenate([p.members for p in parts]), np.concatenate([p.group for p in parts]))

    @property
    def sizes(self) -> np.ndarray:
        return self.members.sum(1)

    @property
    def weights(self) -> np.ndarray:
        """(C,) weights of the protocol's mean: uniform within a group, each group summing to 1/G."""
        counts = np.bincount(self.group)
        return 1.0 / (np.count_nonzero(counts) * counts[self.group])


def combination_outputs(outputs: np.ndarray, comb: Combinations, start: int, stop: int) -> np.ndarray:
    """Mean outputs of combinations start..stop: outputs (..., S, n, k) → (..., c, n, k)."""
    *lead, s, n, k = outputs.shape
    rows = comb.members[start:stop]
    mean = rows / rows.sum(1, keepdims=True)
    return np.matmul(mean, outputs.reshape(*lead, s, n * k)).reshape(*lead, len(rows), n, k)


def combination_scores(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray, comb: Combinations,
                       budget: int = _BUDGET) -> dict[str, np.ndarray]:
    """Every metric of every combination's ensemble: outputs (..., S, n, k) → metric → (..., C)."""
    if task.num_labels == 2:
        return _binary_scores(task, outputs, labels, comb, budget)
    *lead, _, n, k = outputs.shape
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    step = max(1, budget // (batch * n * k))
    parts: dict[str, list[np.ndarray]] = {m: [] for m in task.metrics}
    for start in range(0, len(comb), step):
        pred = predictions(task, combination_outputs(outputs, comb, start, start + step))
        for name, value in score(task, pred, labels).items():
            parts[name].append(value)
    return {m: np.concatenate(v, axis=-1) if v else np.empty((*lead, 0)) for m, v in parts.items()}


def _binary_scores(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray, comb: Combinations, budget: int
                   ) -> dict[str, np.ndarray]:
    """Two classes: an ensemble predicts 1 iff the sum over its members of (output₁ − output₀) is > 0 (argmax's
    tie goes to 0), so one column is summed, in one matrix product for all ensembles of all batch entries."""
    *lead, s, n, _ = outputs.shape
    margin = np.moveaxis(outputs[..., 1] - outputs[..., 0], -2, 0).reshape(s, -1, n)  # (S, B, n)
    counts = binary_counts(margin, labels, comb, budget)  # (C, B, 2)
    values = binary_from_counts(counts[..., 0], counts[..., 1], int(np.count_nonzero(labels == 1)), n)
    return {m: np.moveaxis(values[m], 0, -1).reshape(*lead, len(comb)) for m in task.metrics}


def binary_counts(margin: np.ndarray, labels: np.ndarray, comb: Combinations, budget: int = _BUDGET
                  ) -> np.ndarray:
    """(C, B, 2): true and predicted positives of every ensemble for each of B member sets, from their margins
    (S, B, n) (output₁ − output₀ per member and example)."""
    s, b, n = margin.shape
    positive = labels == 1
    if not positive[:positive.sum()].all():  # positives first: the counts are then sums over two slices
        order = np.argsort(~positive, kind="stable")
        margin, positive = margin[:, :, order], positive[order]
    pos = int(positive.sum())
    flat = np.ascontiguousarray(margin).reshape(s, b * n)
    rows = comb.members.astype(np.float64)
    out = np.empty((len(comb), b, 2))
    step = max(1, budget // (b * n))
    for start in range(0, len(comb), step):
        pred = (rows[start:start + step] @ flat).reshape(-1, b, n) > 0
        tp = pred[..., :pos].sum(-1, dtype=np.int32)
        out[start:start + step, :, 0] = tp
        out[start:start + step, :, 1] = tp + pred[..., pos:].sum(-1, dtype=np.int32)
    return out


def table_score(scores: dict[str, np.ndarray], comb: Combinations) -> dict[str, np.ndarray]:
    """The protocol's mean over combinations: metric → (...)."""
    w = comb.weights
    return {m: v @ w for m, v in scores.items()}


@dataclass
class MethodEnsembles:
    """One method's members, single scores, and its ensembles of every size its groups can form."""

    method: str
    seeds: list[int]
    outputs: np.ndarray  # (S, n, k) what members average
    groups: list[np.ndarray]  # member indices per group
    single: dict[str, np.ndarray]  # metric → (S,) score of each member
    combos: dict[int, Combinations]  # size → its ensembles (sizes some group can form)
    scores: dict[int, dict[str, np.ndarray]]  # size → metric → (C,)

    def table(self, sizes: Sequence[int]) -> tuple[Combinations, dict[str, np.ndarray]] | None:
        """Table 1's ensembles (all of `sizes` pooled) and their scores; None if no group can form them."""
        if any(m not in self.combos for m in sizes):
            return None
        comb = Combinations.concat([self.combos[m] for m in sizes])
        return comb, {k: np.concatenate([self.scores[m][k] for m in sizes]) for k in self.single}

    def table_score(self, sizes: Sequence[int]) -> dict[str, float]:
        """Table 1's ensemble score per metric (nan where no group can form the ensembles)."""
        t = self.table(sizes)
        if t is None:
            return {k: float("nan") for k in self.single}
        return {k: float(v) for k, v in table_score(t[1], t[0]).items()}

    @property
    def group_sizes(self) -> list[int]:
        return [len(g) for g in self.groups]


def evaluate(rs: ResultSet, method: str, sizes: Sequence[int], combine: str = "probabilities") -> MethodEnsembles:
    """Single models and ensembles of every size in `sizes` that some group can form."""
    seeds = rs.seeds(method)
    outputs = member_outputs(rs.task, rs.logits(method), combine)
    single = score(rs.task, predictions(rs.task, outputs), rs.labels)
    groups = seed_groups(seeds)
    largest = max(len(g) for g in groups)
    combos, scores = {}, {}
    for m in sorted(set(sizes)):
        if 1 <= m <= largest:
            combos[m] = Combinations.within(groups, len(seeds), m)
            scores[m] = combination_scores(rs.task, outputs, rs.labels, combos[m])
    return MethodEnsembles(method, seeds, outputs, groups, single, combos, scores)
