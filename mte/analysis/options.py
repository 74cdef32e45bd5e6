"""The report's options, declared once (the `mte report` flags are generated from this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mte.errors import MteError
from mte.fields import check, hp
from mte.tasks import TASKS

COMBINE = ("probabilities", "logits")
METRICS = tuple(dict.fromkeys(m for t in TASKS.values() for m in t.metrics))  # every task's, in table order


@dataclass(frozen=True)
class AnalysisOptions:
    PANEL: ClassVar[str] = "Analysis"
    sizes: tuple[int, ...] | None = hp(None, "Table 1's ensemble sizes, comma list. Default: 5 members, as the "
                                             "paper (fewer where the groups hold fewer seeds, said in the report). "
                                             "Other sizes are labelled as not the paper's.", metavar="LIST")
    combine: str = hp("probabilities", "What an ensemble averages: its members' class probabilities (the paper) "
                                       "or their logits.", choices=COMBINE)
    headline: str | None = hp(None, "Headline metric (default: the task's first, e.g. accuracy for MRPC).",
                               choices=METRICS)
    permutations: int = hp(1000, "Random swaps of the seed-level permutation test (all 2^pairs when fewer).")
    permutation_seed: int = hp(0, "Seed of the permutation test's swaps.")
    level: float = hp(0.95, "Confidence level of the Δ intervals (seed-level jackknife).")
    alpha: float = hp(0.05, "Significance level of the marks: a mark claims 'better' when the one-sided p is "
                            "below it (false marks at rate alpha).")

    def validate(self) -> AnalysisOptions:
        check(self)
        if self.sizes is not None and (not self.sizes or min(self.sizes) < 1):
            raise MteError(f"ensemble sizes must be >= 1, got {list(self.sizes)}")
        if not (0 < self.level < 1 and 0 < self.alpha < 1):
            raise MteError("--level and --alpha must be in (0, 1)")
        if self.permutations < 1:
            raise MteError(f"--permutations must be >= 1, got {self.permutations}")
        return self
