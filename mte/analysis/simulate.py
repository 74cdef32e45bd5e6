"""Synthetic sweeps with the seed-level variance of real fine-tunes, to check the tests' size and power.

An MRPC-like dev set (408 examples, 68% positive). Example i has a margin a_i ~ N(2.4, 2²) (how easy it is). A
member (method, seed s) sees margin a_i + b_s + e_si (+ δ for a method with a planted shift): b_s ~ N(0, 0.05²)
makes some seeds better overall, e_si ~ N(0, 1.5²) is what makes members disagree. e has three parts: 60% of its
variance is common to every member (the errors all fine-tunes share, which no ensemble removes), 20% is shared
by seed s of every method (same head initialisation and data order) and the rest is the member's own. The
member's logits put the margin on the true class. With these values a single model scores about 83.0% accuracy
with a standard deviation of 1.2 points over seeds, and a 5-member ensemble about 1.4 points more: in the range
seen for BERT on MRPC.

Two planted effects, each a claim Table 1 can make:
- a shift δ of a method's margins: better single models, and so better ensembles, with the same gain from
  ensembling (diff gain ≈ 0);
- a smaller common share for a method: its members are more diverse (their errors less alike) at the same single
  accuracy (a member's margin has the same distribution), so only its ensembles are better (diff gain ≈ gain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mte.analysis.resultset import Member, ResultSet
from mte.tasks import get_task


@dataclass(frozen=True)
class Generator:
    examples: int = 408
    seeds: int = 20
    positive: float = 0.68
    margin_mean: float = 2.4
    margin_sd: float = 2.0
    seed_sd: float = 0.05
    noise_sd: float = 1.5
    common_share: float = 0.6  # of a member's noise variance, common to every member of every method
    pair_share: float = 0.2  # ... shared by the same seed of every method

    def draw(self, rng: np.random.Generator, shifts: Mapping[str, float],
             common: Mapping[str, float] | None = None) -> ResultSet:
        """One sweep: a member per (method, seed). `shifts`: method → δ added to its margins (0: no effect);
        `common`: method → its common share, if not `common_share` (lower: more diverse members)."""
        labels = (rng.random(self.examples) < self.positive).astype(np.int64)
        margin = rng.normal(self.margin_mean, self.margin_sd, self.examples)
        everyone = rng.normal(0.0, 1.0, self.examples)
        shared = rng.normal(0.0, 1.0, (self.seeds, self.examples))
        sign = np.where(labels == 1, 1.0, -1.0)
        members = []
        for method, delta in shifts.items():
            c = (common or {}).get(method, self.common_share)
            if not 0 <= c <= 1 - self.pair_share:
                raise ValueError(f"common share {c} outside [0, {1 - self.pair_share}]")
            own = rng.normal(0.0, 1.0, (self.seeds, self.examples))
            noise = self.noise_sd * (np.sqrt(c) * everyone + np.sqrt(self.pair_share) * shared
                                     + np.sqrt(1 - self.pair_share - c) * own)
            total = margin + rng.normal(0.0, self.seed_sd, (self.seeds, 1)) + noise + delta
            logits = np.stack([-sign * total / 2, sign * total / 2], -1).astype(np.float32)
            members += [Member(method, s, logits[s]) for s in range(self.seeds)]
        return ResultSet.from_members(get_task("mrpc"), labels, members)
