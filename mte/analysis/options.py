"""The report's options, declared once (the `mte report` flags are generated from this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mte.errors import MteError
from mte.fields import check, hp

PAPER_GROUPS = 2  # 20 seeds in two groups of 10


@dataclass(frozen=True)
class AnalysisOptions:
    PANEL: ClassVar[str] = "Analysis"
    groups: int | None = hp(None, "Seed groups of the protocol (default: 2 with ≥ 10 seeds, else 1).")
    sizes: tuple[int, ...] | None = hp(None, "Ensemble sizes, comma list (default: 2,3,4,5 or what the seeds "
                                             "allow).", metavar="LIST")
    headline: str | None = hp(None, "Headline metric (default: the task's first, e.g. accuracy for MRPC).")
    resamples: int = hp(1000, "Bootstrap resamples of the dev examples for the Δ BASELINE intervals.")
    level: float = hp(0.95, "Confidence level of the intervals.")
    alpha: float = hp(0.05, "Significance level of the marks.")
    resample_seed: int = hp(0, "Seed of the bootstrap resamples.")

    def protocol(self, seeds: int) -> tuple[int, tuple[int, ...]]:
        """(groups, ensemble sizes) for methods of up to `seeds` members: the given ones, or what fits."""
        check(self)
        if self.groups is not None and self.groups < 1:
            raise MteError(f"groups must be >= 1, got {self.groups}")
        if self.sizes is not None and (not self.sizes or min(self.sizes) < 1):
            raise MteError(f"ensemble sizes must be >= 1, got {list(self.sizes)}")
        if not (0 < self.level < 1 and 0 < self.alpha < 1) or self.resamples < 1:
            raise MteError("level and alpha must be in (0, 1) and resamples >= 1")
        groups = self.groups if self.groups is not None else PAPER_GROUPS if seeds >= 10 else 1
        sizes = self.sizes if self.sizes is not None else tuple(range(2, min(seeds // groups, 5) + 1))
        if not sizes:
            raise MteError(f"{seeds} seed(s) in {groups} group(s) make no ensembles: at least 2 seeds per group "
                           "are needed")
        return groups, tuple(sorted(set(sizes)))
