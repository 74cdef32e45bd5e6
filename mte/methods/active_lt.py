"""ACTIVE-LT: IMP whose pruning fine-tunes carry τ·‖θ ⊙ l‖₁ with l the mean of the earlier seeds' final masks, so
each seed is pushed away from the weights the tickets before it kept. Seeds run in order (a chain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mte.methods.base_lt import BaseLT, imp
from mte.methods.method import GROUP_SIZE, Seed, Step

if TYPE_CHECKING:
    from mte.hparams import MethodHparams

class ActiveLT(BaseLT):
    name = "active-lt"
    label = "ACTIVE-LT"
    reads = (*BaseLT.reads, "tau", "active_chain")
    uses_tau = True
    chain = True

    def fine_tunes(self, seed: Seed) -> list[Step]:
        hp = seed.hp
        if hp.tau == 0 or not seed.prior_masks:  # the chain's first seed has no earlier masks: it is BASE-LT's
            return imp(seed)
        reg_id = {"active": seed.prior_digests, "tau": hp.tau}
        return imp(seed, reg_id, seed.regulariser(hp.tau, "active"))

    def chain_seeds(self, hp: MethodHparams, seed: int) -> range:
        """Seeds 0..seed (--active-chain all), or the earlier seeds of its own group of GROUP_SIZE (group)."""
        start = 0 if hp.active_chain == "all" else seed - seed % GROUP_SIZE
        return range(start, seed + 1)
