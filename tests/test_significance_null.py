"""The seed-level permutation test holds its size and has power; the paper's t-test does not hold its size.

Replications of two methods drawn from one generator (`mte.analysis.simulate`: 20 seeds in two groups of 10, an
MRPC-size dev set, single models with the seed-to-seed spread of real fine-tunes), compared exactly as Table 1
compares methods (5-member ensembles). A mark (`significance.better`: one-sided p < α) claims "better" at α, so
under no difference the rate of false marks must be the test's size at α (5/101, 10/101 and 20/101 for
α = 0.05, 0.1, 0.2 with 100 permutations) within three Monte-Carlo standard errors: a mark that were a
two-sided test (at α/2) would fail at 0.1 and 0.2. A planted ensemble gain of about 1.5 points must be marked in at
least 80%. Also printed: the paper's t-test's rejection rate (which motivates the permutation test) and the
jackknife interval's coverage.
"""

from __future__ import annotations

import numpy as np
import pytest

from mte.analysis.ensembles import evaluate
from mte.analysis.significance import better, compare
from mte.analysis.simulate import Generator

NULL_REPLICATIONS = 500  # under no difference: the rate's standard error is about 1 point
PLANTED_REPLICATIONS = 200
PERMUTATIONS = 100  # p = (1 + e) / 101 < 0.05 ⟺ e ≤ 4: a test of size 5/101 = 4.95%
PLANTED = 0.125  # margin shift giving a 5-member ensemble gain of about 1.5 points (measured below)
ALPHA = 0.05
LEVELS = (0.05, 0.1, 0.2)  # α of the false-mark check


def replicate(rng: np.random.Generator, shift: float, r: int) -> tuple[float, float, float, bool, float]:
    """(gain, one-sided permutation p, t-test p, interval covers 0, two-sided permutation p) of one sweep."""
    rs = Generator().draw(rng, {"baseline": 0.0, "random-lt": shift})
    a, b = evaluate(rs, "random-lt", (5,)), evaluate(rs, "baseline", (5,))
    c = compare(rs.task, rs.labels, a, b, (5,), permutations=PERMUTATIONS, seed=r)
    return c.gain["accuracy"], c.p_perm["accuracy"], c.p_ttest["accuracy"], c.ci_low["accuracy"] <= 0 <= \
        c.ci_high["accuracy"], c.p_perm_two_sided["accuracy"]


def marks(rows: np.ndarray, alpha: float, column: int = 1) -> float:
    return float(np.mean([better(g, p, alpha) for g, p in zip(rows[:, 0], rows[:, column], strict=True)]))


@pytest.mark.slow
def test_permutation_test_size_and_power_by_simulation():
    rng = np.random.default_rng(20261125)
    null = np.array([replicate(rng, 0.0, r) for r in range(NULL_REPLICATIONS)])
    planted = np.array([replicate(rng, PLANTED, r) for r in range(PLANTED_REPLICATIONS)])
    size = {alpha: marks(null, alpha) for alpha in LEVELS}
    two_sided = {alpha: marks(null, alpha, column=4) for alpha in LEVELS}  # "gain > 0 and two-sided p < α"
    t_size = float(np.mean(null[:, 2] < ALPHA))
    coverage = float(np.mean(null[:, 3]))
    power = marks(planted, ALPHA)
    t_power = float(np.mean((planted[:, 2] < ALPHA) & (planted[:, 0] > 0)))
    print(f"\n{NULL_REPLICATIONS} replications without and {PLANTED_REPLICATIONS} with a difference; 20 seeds "
          f"(2 groups of 10), 408 dev examples, 5-member ensembles, {PERMUTATIONS} permutations")
    print("no difference, false-mark rate at α = " + ", ".join(f"{a:g}: {size[a]:.3f}" for a in LEVELS)
          + " (one-sided, the marks); " + ", ".join(f"{a:g}: {two_sided[a]:.3f}" for a in LEVELS)
          + " (gain > 0 and two-sided p < α)")
    print(f"no difference: paper's t-test rejects {t_size:.3f} at α = {ALPHA}; jackknife 95% interval covers 0 in "
          f"{coverage:.3f}; mean gain {100 * null[:, 0].mean():+.2f} points")
    print(f"planted gain {100 * planted[:, 0].mean():+.2f} points (sd {100 * planted[:, 0].std():.2f}): "
          f"marked (α = {ALPHA}) {power:.3f}; paper's t-test {t_power:.3f}")
    for alpha in LEVELS:
        nominal = np.floor(alpha * (PERMUTATIONS + 1) - 1e-9) / (PERMUTATIONS + 1)  # (1 + e)/101 < α
        error = np.sqrt(nominal * (1 - nominal) / NULL_REPLICATIONS)
        assert abs(size[alpha] - nominal) <= 3 * error, (alpha, size[alpha], nominal)
    assert 1.3 <= 100 * planted[:, 0].mean() <= 1.7  # the planted gain is the one asked for
    assert power >= 0.8
