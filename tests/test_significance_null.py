"""The seed-level permutation test holds its size and has power; the paper's t-test does not hold its size.

Replications of two methods drawn from one generator (`mte.analysis.simulate`: 20 seeds in two groups of 10, an
MRPC-size dev set, single models with the seed-to-seed spread of real fine-tunes), compared exactly as Table 1
compares methods (5-member ensembles). Under no difference the permutation test must reject at α = 0.05 in 2–8%
of replications; a planted ensemble gain of about 1.5 points must be found in at least 80%. Also printed: the
paper's t-test's rejection rate (which motivates the permutation test) and the jackknife interval's coverage.
"""

from __future__ import annotations

import numpy as np
import pytest

from mte.analysis.ensembles import evaluate
from mte.analysis.significance import compare
from mte.analysis.simulate import Generator

NULL_REPLICATIONS = 500  # under no difference: the rate's standard error is about 1 point
PLANTED_REPLICATIONS = 200
PERMUTATIONS = 100  # p = (1 + e) / 101 < 0.05 ⟺ e ≤ 4: a test of size 5/101 = 4.95%
PLANTED = 0.125  # margin shift giving a 5-member ensemble gain of about 1.5 points (measured below)
ALPHA = 0.05


def replicate(rng: np.random.Generator, shift: float, r: int) -> tuple[float, float, float, bool]:
    """(gain, permutation p, t-test p, interval covers 0) of one simulated sweep."""
    rs = Generator().draw(rng, {"baseline": 0.0, "random-lt": shift})
    a, b = evaluate(rs, "random-lt", (5,)), evaluate(rs, "baseline", (5,))
    c = compare(rs.task, rs.labels, a, b, (5,), permutations=PERMUTATIONS, seed=r)
    return c.gain["accuracy"], c.p_perm["accuracy"], c.p_ttest["accuracy"], c.ci_low["accuracy"] <= 0 <= \
        c.ci_high["accuracy"]


@pytest.mark.slow
def test_permutation_test_size_and_power_by_simulation():
    rng = np.random.default_rng(20261125)
    null = np.array([replicate(rng, 0.0, r) for r in range(NULL_REPLICATIONS)])
    planted = np.array([replicate(rng, PLANTED, r) for r in range(PLANTED_REPLICATIONS)])
    size = float(np.mean(null[:, 1] < ALPHA))
    t_size = float(np.mean(null[:, 2] < ALPHA))
    coverage = float(np.mean(null[:, 3]))
    power = float(np.mean((planted[:, 1] < ALPHA) & (planted[:, 0] > 0)))
    t_power = float(np.mean((planted[:, 2] < ALPHA) & (planted[:, 0] > 0)))
    print(f"\n{NULL_REPLICATIONS} replications without and {PLANTED_REPLICATIONS} with a difference; 20 seeds "
          f"(2 groups of 10), 408 dev examples, 5-member ensembles, {PERMUTATIONS} permutations, α = {ALPHA}")
    print(f"no difference:  permutation test rejects {size:.3f}; paper's t-test rejects {t_size:.3f}; "
          f"jackknife 95% interval covers 0 in {coverage:.3f}; mean gain {100 * null[:, 0].mean():+.2f} points")
    print(f"planted gain {100 * planted[:, 0].mean():+.2f} points (sd {100 * planted[:, 0].std():.2f}): "
          f"permutation test detects {power:.3f}; paper's t-test {t_power:.3f}")
    assert 0.02 <= size <= 0.08
    assert 1.3 <= 100 * planted[:, 0].mean() <= 1.7  # the planted gain is the one asked for
    assert power >= 0.8
