"""RANDOM-LT: IMP whose pruning fine-tunes carry τ·‖θ ⊙ l‖₁ with a random Bernoulli l (P(0) = the target sparsity),
so each seed is pushed towards a different random part of the weights."""

from __future__ import annotations

from mte.methods.base_lt import BaseLT, imp
from mte.methods.method import Seed, Step


class RandomLT(BaseLT):
    name = "random-lt"
    label = "RANDOM-LT"
    reads = (*BaseLT.reads, "tau")
    uses_tau = True

    def fine_tunes(self, seed: Seed) -> list[Step]:
        hp = seed.hp
        if hp.tau == 0:
            return imp(seed)
        reg_id = {"random": seed.seed, "p0": hp.sparsity, "tau": hp.tau}
        return imp(seed, reg_id, seed.regulariser(hp.tau, "random"))
