"""BASELINE: one dense fine-tune per seed; the seed ensemble every other method is compared with."""

from __future__ import annotations

from mte.methods.method import Method, Seed, Step


class Baseline(Method):
    name = "baseline"
    label = "BASELINE"

    def fine_tunes(self, seed: Seed) -> list[Step]:
        """The fine-tune is BASE-LT's first IMP round (dense, unregularised), so it also stores the mask that
        round prunes to: BASE-LT seed s then reuses BASELINE seed s whole."""
        return [Step("baseline", prune_to=seed.targets()[0])]
