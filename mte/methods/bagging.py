"""BAGGING: one dense fine-tune per seed on its own seeded subset of train (the classic way to diversify members)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mte.methods.method import Method, Seed, Step

if TYPE_CHECKING:
    import numpy as np

    from mte.hparams import MethodHparams


def bagging_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded random subset of round(fraction·n) distinct training indices, in ascending order."""
    import numpy as np  # here, not at import: declaring the methods costs a command's start-up no NumPy

    rng = np.random.default_rng([seed, 0xBA6])
    k = round(fraction * n)
    return np.sort(rng.choice(n, size=k, replace=False))


class Bagging(Method):
    name = "bagging"
    label = "BAGGING"
    reads = ("bagging_fraction",)

    def fine_tunes(self, seed: Seed) -> list[Step]:
        return [Step("bagging", subset={"bagging": seed.hp.bagging_fraction})]

    def train_subset(self, hp: MethodHparams, seed: int, n: int) -> np.ndarray:
        return bagging_subset(n, hp.bagging_fraction, seed)
