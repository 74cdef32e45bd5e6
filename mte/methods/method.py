"""What a method is: one class that says how one seed is trained, and everything the platform derives from it.

The planner, the trials, the store keys, the MLflow records, the report and the τ search ask the method, never
its name: which hyperparameters change its result (`reads`, `params`: its hash, its MLflow params, its flags), its
fine-tunes (`fine_tunes`: dense or IMP rounds, each one's regulariser, training subset, rewind point and kept
head), what it needs from other seeds (`chain`: the earlier seeds' final masks), whether τ applies (`uses_tau`,
so `mte tune-tau` offers it) and whether its members are sparse tickets (`prunes`: mask overlap, winning
tickets). A method's plan is written without torch: regularisers and targets come from the `Seed` it is given,
so declaring one costs a report or a `--help` no model code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np

    from mte.hparams import MethodHparams
    from mte.masks import Mask

GROUP_SIZE = 10  # seeds per group, by id (0–9, 10–19, ...): the paper's 20 seeds in two groups of 10
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Param:
    """A hyperparameter a method declares for itself (a plugin's; the built-in ones are `MethodHparams` fields):
    its name, default and help. Its type is its default's (int, float, str or bool); it becomes the flag
    `--<name with dashes>` of every command that loads the method."""

    name: str
    default: int | float | str | bool
    help: str

    @property
    def type(self) -> type:
        return type(self.default)


@dataclass(frozen=True)
class Step:
    """One fine-tune of a seed's plan. Each field that changes the fine-tune's result enters its store key, so
    two methods that ask for the same fine-tune share it (BASELINE's is BASE-LT's first round).

    name: what a progress bar says ("{sparsity}" becomes the sparsity it trains under);
    prune_to: prune after it, to this many removed weights of the original prunable ones (None: keep the mask);
    reg, reg_id: its L1 regulariser (from `Seed.regulariser`) and the regulariser's identity in the key;
    subset: the identity of the training subset (the subset itself comes from `Method.train_subset`);
    keep_head: the next fine-tune starts from this one's trained classifier head instead of the initial head;
    rewind_steps: start from the weights after this many optimizer steps of the seed's dense, unregularised
    first fine-tune (late rewinding) instead of the initial weights (0).
    """

    name: str
    prune_to: int | None = None
    reg_id: Any = None
    reg: Any = None
    subset: Any = None
    keep_head: bool = False
    rewind_steps: int = 0

    def describe(self, mask: Mask) -> str:
        return self.name.format(sparsity=f"{mask.sparsity:.0%}")


class Seed(Protocol):
    """What a method's plan may ask about the seed it trains (given by `mte.lottery`, or by the planner's dry
    run, which has no model and stands in placeholders for regularisers and masks)."""

    hp: MethodHparams  # the method's hyperparameters
    seed: int
    prior_masks: Sequence[Mask]  # chain methods: the final masks of the earlier seeds (in seed order)
    prior_digests: list[str]  # their digests, sorted: what a regulariser built from them is keyed by

    def param(self, name: str) -> Any:
        """A plugin parameter's value (given, else its declared default)."""

    def targets(self) -> list[int]:
        """Removed weights after each IMP round: round(total·sparsity·r/rounds), r = 1..rounds."""

    def regulariser(self, tau: float, coefficients: str | dict[str, Any]) -> Any:
        """τ·‖θ ⊙ l‖₁ on the prunable weights: l as 'random' (Bernoulli, P(0) = hp.sparsity, seeded by the seed),
        'active' (the mean of `prior_masks`), or a dict of per-parameter coefficient tensors."""


class Method:
    """A way of training one seed. Subclass it, set the class attributes, write `fine_tunes`, and register the
    class (`mte.methods.register`): the platform needs nothing else."""

    name: ClassVar[str]  # lower case and dashes, e.g. "base-lt": the --methods value, the MLflow tag, the store's
    label: ClassVar[str] = ""  # in tables and figures (default: the name in capitals)
    reads: ClassVar[tuple[str, ...]] = ()  # the MethodHparams fields that change its result (its hash, its params)
    params: ClassVar[tuple[Param, ...]] = ()  # hyperparameters of its own (a plugin's), read with `Seed.param`
    prunes: ClassVar[bool] = False  # its members are sparse tickets (their masks are compared)
    uses_tau: ClassVar[bool] = False  # its result depends on τ (`mte tune-tau` searches it)
    chain: ClassVar[bool] = False  # seed i needs the final masks of the seeds `chain_seeds` gives (ACTIVE-LT)

    def fine_tunes(self, seed: Seed) -> list[Step]:
        """The seed's fine-tunes in order; the last one is the seed's model."""
        raise NotImplementedError

    def train_subset(self, hp: MethodHparams, seed: int, n: int) -> np.ndarray | None:
        """Indices of the training examples every fine-tune of the seed sees (None: all `n`)."""
        return None

    def chain_seeds(self, hp: MethodHparams, seed: int) -> range:
        """The seeds whose final masks seed `seed` needs, then `seed` itself (only `seed` unless `chain`)."""
        return range(seed, seed + 1)

    def check(self, hp: MethodHparams, seed: int) -> None:
        """Refuse (MteError, one line) hyperparameters this method cannot train with."""

    @classmethod
    def title(cls) -> str:
        return cls.label or cls.name.upper()

    @classmethod
    def own(cls) -> dict[str, Param]:
        """Its own parameters by name."""
        return {p.name: p for p in cls.params}
