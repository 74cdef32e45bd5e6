"""A seed's plan without a model: what the planner counts (fine-tunes per unit, and which of them two units share)
before anything is trained."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mte.methods.method import Method, Step

if TYPE_CHECKING:
    from mte.hparams import MethodHparams
    from mte.masks import Mask


@dataclass
class DrySeed:
    """`Seed` with placeholders: targets are fractions, earlier masks are names, regularisers are None."""

    method: Method
    hp: MethodHparams
    seed: int
    prior_masks: list[Mask] = field(default_factory=list)
    prior_digests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        earlier = list(self.method.chain_seeds(self.hp, self.seed))[:-1] if self.method.chain else []
        self.prior_digests = [f"{self.method.name} seed {s}" for s in earlier]
        self.prior_masks = list(self.prior_digests)  # type: ignore[arg-type]  (stand-ins: only their number counts)

    def param(self, name: str) -> Any:
        return self.hp.param(self.method, name)

    def targets(self) -> list[int]:
        return [f"{self.hp.sparsity}·{r}/{self.hp.rounds}" for r in range(1, self.hp.rounds + 1)]  # type: ignore[misc]

    def regulariser(self, tau: float, coefficients: Any) -> None:
        return None


def plan(method: Method, hp: MethodHparams, seed: int) -> list[Step]:
    """The method's fine-tunes for `seed`, with placeholders where they need a model."""
    return method.fine_tunes(DrySeed(method, hp, seed))


def identities(method: Method, hp: MethodHparams, seed: int) -> list[Hashable]:
    """One identity per fine-tune, equal exactly where the store shares the fine-tune: what a fine-tune's key
    covers (the seed, its mask, its regulariser, its subset, its starting point), with each mask named by the
    fine-tune and target it was pruned from."""
    out: list[Hashable] = []
    mask: Hashable = "dense"
    head: Hashable = None
    for step in plan(method, hp, seed):
        identity = (seed, mask, repr(step.reg_id), repr(step.subset), head, step.rewind_steps)
        out.append(identity)
        if step.prune_to is not None:
            mask = (identity, step.prune_to)
        head = identity if step.keep_head else None
    return out
