"""Did a model learn the task, and is a ticket a winning ticket? Both judged per member on one metric.

A model that did not learn scores what a predictor that ignores its input scores: the majority class
(accuracy), predicting the positive class for every example (F1: the best constant prediction), or any constant
prediction (Matthews correlation, Pearson, Spearman: 0). A member learned when its score exceeds that by more
than two standard errors of the trivial score's sampling spread: √(p(1 − p)/n) for accuracy, 1/√n for a
correlation (its spread when there is none); F1 has no simple spread, so it must only exceed the constant's.

A winning ticket (Frankle & Carbin; Chen et al. for BERT) is a sparse subnetwork that trains to the dense
model's score. Here, per ticket (one seed of a *-LT method) on the headline metric: winning when its score is
at least the dense models' (BASELINE's) mean minus one standard deviation over their seeds, i.e. within one
standard deviation below the dense mean or above it. A ticket that did not learn is never winning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

CORRELATIONS = ("matthews", "pearson", "spearman")


@dataclass(frozen=True)
class Trivial:
    """What a predictor that ignores its input scores on one metric, and the score a learner must exceed."""

    metric: str
    score: float
    floor: float  # a member learned when its score > floor
    predictor: str

    def describe(self) -> str:
        spread = " + 2 standard errors" if self.floor > self.score else ""
        return f"{100 * self.floor:.1f} ({self.predictor}: {100 * self.score:.1f}{spread})"


def trivial(metric: str, labels: np.ndarray) -> Trivial:
    """The trivial predictor's score on `metric` for these dev labels (classification ids or regression targets)."""
    n = len(labels)
    if metric == "accuracy":
        majority = float(np.bincount(labels).max() / n)
        return Trivial(metric, majority, majority + 2 * np.sqrt(majority * (1 - majority) / n),
                       "the majority class")
    if metric == "f1":
        p = float(np.mean(labels == 1))
        constant = 2 * p / (1 + p)
        return Trivial(metric, constant, constant, "the positive class for every example")
    if metric in CORRELATIONS:
        return Trivial(metric, 0.0, 2 / np.sqrt(n), "a constant prediction")
    raise ValueError(f"no trivial predictor for metric {metric!r}")


def learned(single: Mapping[str, np.ndarray], labels: np.ndarray, metrics: tuple[str, ...]) -> np.ndarray:
    """(S,) whether each member beats the trivial predictor on every metric of `metrics`."""
    ok = np.ones(len(next(iter(single.values()))), dtype=bool)
    for k in metrics:
        ok &= single[k] > trivial(k, labels).floor
    return ok


def not_learned_warnings(single: Mapping[str, Mapping[str, np.ndarray]], labels: np.ndarray,
                         metrics: tuple[str, ...]) -> list[str]:
    """One line per metric where some method's mean single score does not beat the trivial predictor.
    `single`: method → metric → (S,) member scores."""
    out = []
    for k in metrics:
        t = trivial(k, labels)
        means = {m: float(np.mean(s[k])) for m, s in single.items()}
        weak = [f"{m} {100 * v:.1f}" for m, v in means.items() if v <= t.floor]
        if weak:
            out.append(f"mean single {k} ×100 not above {t.describe()}: {', '.join(weak)}; these models did not "
                       f"learn the task (or barely), so their ensembles and tickets say nothing about it")
    return out


@dataclass(frozen=True)
class Tickets:
    """One lottery method's tickets judged against the dense models."""

    winning: int
    learned: int
    total: int
    threshold: float  # dense mean − 1 sd

    @property
    def share(self) -> float:
        return self.winning / self.total if self.total else float("nan")


def winning_tickets(tickets: np.ndarray, dense: np.ndarray, ticket_learned: np.ndarray) -> Tickets | None:
    """Tickets (S,) whose headline score is ≥ the dense models' mean − 1 sd (sample, ddof = 1) and that learned;
    None when the dense models are too few for a standard deviation."""
    if len(dense) < 2:
        return None
    threshold = float(dense.mean() - dense.std(ddof=1))
    winning = (tickets >= threshold) & ticket_learned
    return Tickets(int(winning.sum()), int(ticket_learned.sum()), len(tickets), threshold)
