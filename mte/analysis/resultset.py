"""The analysis input: one task's dev labels and, per method, its members' dev logits and masks.

Built from in-memory arrays, so it does not care where results were stored (result store, MLflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mte import methods as registry
from mte.errors import MteError
from mte.tasks import TaskSpec, get_task

if TYPE_CHECKING:  # keeps torch (imported by mte.results) out of the analysis
    from mte.results import SeedResult


@dataclass(frozen=True, eq=False)  # arrays: compare members by identity, not element-wise
class Member:
    """One seed of one method. `mask`: flat bool array of kept weights (or its `np.packbits` form,
    8× smaller, for many large masks); None for dense methods."""

    method: str
    seed: int
    dev_logits: np.ndarray  # (n, k) float32; k = 1 for regression
    mask: np.ndarray | None = None
    sparsity: float | None = None  # fraction of prunable weights removed (0 for dense methods)
    sparsity_all: float | None = None  # the weights removed as a fraction of all the model's parameters


def _prunes(method: str, sparsity: float) -> bool:
    """As the method declares; a plugin's method not loaded for the report: whether its masks remove weights."""
    found = registry.find(method)
    return found.prunes if found is not None else sparsity > 0


def method_order(methods: Iterable[str]) -> list[str]:
    """The registry's order (the paper's methods, then plugins' as loaded), then unknown ones alphabetically."""
    return registry.order(set(methods))


@dataclass
class ResultSet:
    task: TaskSpec
    labels: np.ndarray  # (n,) class ids or regression targets
    members: dict[str, list[Member]] = field(default_factory=dict)  # method → members in seed order

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1:
            raise MteError(f"dev labels must be 1-D, got shape {self.labels.shape}")
        n, k = len(self.labels), self.task.num_labels
        checked: dict[str, list[Member]] = {}
        for method in method_order(self.members):
            seen: set[int] = set()
            for m in self.members[method]:
                if m.method != method:
                    raise MteError(f"member {m.method}/seed {m.seed} is filed under method {method}")
                if m.seed in seen:
                    raise MteError(f"{method} has seed {m.seed} twice")
                seen.add(m.seed)
                if m.dev_logits.shape != (n, k):
                    raise MteError(f"{method}/seed {m.seed}: dev logits have shape {m.dev_logits.shape}, "
                                   f"expected ({n}, {k}) for {self.task.name} with {n} dev labels")
            if self.members[method]:
                checked[method] = sorted(self.members[method], key=lambda m: m.seed)
        self.members = checked

    @classmethod
    def from_members(cls, task: TaskSpec, labels: np.ndarray, members: Iterable[Member]) -> ResultSet:
        by_method: dict[str, list[Member]] = {}
        for m in members:
            by_method.setdefault(m.method, []).append(m)
        return cls(task, labels, by_method)

    @classmethod
    def from_seed_results(cls, results: Sequence[SeedResult]) -> ResultSet:
        """Dense methods get no mask (theirs is all ones and says nothing about overlap)."""
        if not results:
            raise MteError("no results to analyse")
        tasks = {get_task(r.spec.data.task).name for r in results}
        if len(tasks) > 1:
            raise MteError(f"results of several tasks cannot share a report: {', '.join(sorted(tasks))}")
        labels = results[0].dev_labels
        for r in results[1:]:
            if r.dev_labels.shape != labels.shape or not np.array_equal(r.dev_labels, labels):
                raise MteError(f"{r.spec.method.method}/seed {r.spec.seed} was evaluated on other dev examples "
                               f"({len(r.dev_labels)} vs {len(labels)} labels, or a different order)")
        members = [
            Member(r.spec.method.method, r.spec.seed, np.asarray(r.dev_logits, dtype=np.float32),
                   r.mask.flat() if _prunes(r.spec.method.method, r.mask.sparsity) else None, r.mask.sparsity,
                   (r.mask.total - r.mask.kept) / r.model_params if r.model_params else None)
            for r in results
        ]
        return cls.from_members(get_task(tasks.pop()), labels, members)

    @property
    def methods(self) -> list[str]:
        return list(self.members)

    def prunes(self, method: str) -> bool:
        """Whether `method`'s members are sparse tickets: as the method declares, or (its plugin not loaded)
        whether its members removed weights."""
        return _prunes(method, max((m.sparsity or 0.0 for m in self.members.get(method, [])), default=0.0))

    def seeds(self, method: str) -> list[int]:
        return [m.seed for m in self.members.get(method, [])]

    def logits(self, method: str) -> np.ndarray:
        """(s, n, k) stacked dev logits of the method's members, in seed order."""
        return np.stack([m.dev_logits for m in self.members[method]]).astype(np.float32, copy=False)

    def missing(self, expected_seeds: Iterable[int], expected_methods: Iterable[str] | None = None
                ) -> list[tuple[str, int]]:
        """(method, seed) pairs expected but absent: what a partly finished sweep still lacks."""
        methods = method_order(expected_methods if expected_methods is not None else self.members)
        seeds = sorted(set(expected_seeds))
        return [(m, s) for m in methods for s in seeds if s not in set(self.seeds(m))]
