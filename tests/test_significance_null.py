"""The seed-level permutation test holds its size and has power for both claims Table 1 makes; the paper's t-test
does not hold its size; the stratified jackknife interval covers at its level.

Replications of two methods drawn from one generator (`mte.analysis.simulate`: 20 seeds in two groups of 10, an
MRPC-size dev set, single models with the seed-to-seed spread of real fine-tunes), compared exactly as Table 1
compares methods (5-member ensembles). A mark (`significance.better`: one-sided p < α) claims "better" at α, so
under no difference the rate of false marks must be the test's size at α (2/41, 4/41 and 8/41 for α = 0.05, 0.1,
0.2 with the 40 permutations of the null sweeps: many sweeps at a few permutations make a tighter check than few
at many) within three Monte-Carlo standard errors: a mark that were a two-sided test (at α/2) would fail. Two
planted effects, each at an ensemble gain of about 0.5 and 1.5 points (100 permutations): a margin shift (better
single models; the gain from ensembling unchanged, so a diff mark would be wrong) and more diverse members at
equal single accuracy (an ensemble gain, which the diff mark claims). At 1.5 points each must be marked in at
least 70% of sweeps, and the diff in at least 70% of the diverse sweeps and in no more than α + 3 standard errors
of the shifted ones. Also printed: the paper's t-test's rejection rate (which
motivates the permutation test). Each sweep is compared once; the null sweeps serve every null rate and the
interval's coverage.
"""

from __future__ import annotations

import numpy as np
import pytest

from mte.analysis.ensembles import evaluate
from mte.analysis.significance import better, compare
from mte.analysis.simulate import Generator

NULL_REPLICATIONS = 1000  # under no difference: the rate's standard error is about 0.7 points
PLANTED_REPLICATIONS = 75  # per planted effect and size
NULL_PERMUTATIONS = 40  # p = (1 + e) / 41 < 0.05 ⟺ e ≤ 1: a test of size 2/41 = 4.9%
PERMUTATIONS = 100  # for the planted effects, closer to the marks' 1000
ALPHA = 0.05
LEVELS = (0.05, 0.1, 0.2)  # α of the false-mark check
# (effect, ensemble gain in points) → (margin shift, common share) of the treated method, measured to give that gain
PLANTED = {("shift", 0.5): (0.048, None), ("shift", 1.5): (0.15, None),
           ("diverse", 0.5): (0.0, 0.48), ("diverse", 1.5): (0.0, 0.25)}
COLUMNS = ("gain", "diff", "p", "p_diff", "p_t", "covers", "p_two")


def replicate(rng: np.random.Generator, shift: float, common: float | None, r: int,
              permutations: int = PERMUTATIONS) -> list[float]:
    """One sweep compared as Table 1 does: the values of `COLUMNS`."""
    rs = Generator().draw(rng, {"baseline": 0.0, "random-lt": shift}, {} if common is None else {"random-lt": common})
    a, b = evaluate(rs, "random-lt", (5,)), evaluate(rs, "baseline", (5,))
    c = compare(rs.task, rs.labels, a, b, (5,), permutations=permutations, seed=r)
    k = "accuracy"
    return [c.gain[k], c.diff_gain[k], c.p_perm[k], c.p_perm_diff[k], c.p_ttest[k],
            c.ci_low[k] <= 0 <= c.ci_high[k], c.p_perm_two_sided[k]]


def marks(rows: np.ndarray, alpha: float, p: str = "p", diff: bool = False) -> float:
    """Share of sweeps marked: the ensemble (`diff` False), or the diff as Table 1 marks it (ensemble marked too)."""
    col = {name: rows[:, i] for i, name in enumerate(COLUMNS)}
    ensemble = [better(g, q, alpha) for g, q in zip(col["gain"], col[p], strict=True)]
    if not diff:
        return float(np.mean(ensemble))
    return float(np.mean([e and better(g, q, alpha) for e, g, q in zip(ensemble, col["diff"], col["p_diff"],
                                                                        strict=True)]))


def error(rate: float, n: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / n))


@pytest.mark.slow
def test_permutation_test_size_and_power_by_simulation():
    rng = np.random.default_rng(20261125)
    r = iter(range(10**6))
    null = np.array([replicate(rng, 0.0, None, next(r), NULL_PERMUTATIONS) for _ in range(NULL_REPLICATIONS)],
                    dtype=float)
    planted = {key: np.array([replicate(rng, *effect, next(r)) for _ in range(PLANTED_REPLICATIONS)], dtype=float)
               for key, effect in PLANTED.items()}
    size = {alpha: marks(null, alpha) for alpha in LEVELS}
    two_sided = {alpha: marks(null, alpha, p="p_two") for alpha in LEVELS}  # "gain > 0 and two-sided p < α"
    coverage = float(np.mean(null[:, COLUMNS.index("covers")]))
    print(f"\n{NULL_REPLICATIONS} replications without a difference and {PLANTED_REPLICATIONS} per planted effect; "
          f"20 seeds (2 groups of 10), 408 dev examples, 5-member ensembles, {NULL_PERMUTATIONS} and {PERMUTATIONS} "
          f"permutations")
    print("no difference, false-mark rate at α = " + ", ".join(f"{a:g}: {size[a]:.3f}" for a in LEVELS)
          + " (one-sided, the marks); " + ", ".join(f"{a:g}: {two_sided[a]:.3f}" for a in LEVELS)
          + " (gain > 0 and two-sided p < α)")
    print(f"no difference: paper's t-test rejects {np.mean(null[:, 4] < ALPHA):.3f} at α = {ALPHA}; stratified "
          f"jackknife 95% interval covers 0 in {coverage:.3f}; mean gain {100 * null[:, 0].mean():+.2f} points")
    power = {}
    for (effect, target), rows in planted.items():
        power[effect, target] = marks(rows, ALPHA), marks(rows, ALPHA, diff=True)
        print(f"planted {effect:7s} {target:.1f}: gain {100 * rows[:, 0].mean():+.2f} points (sd "
              f"{100 * rows[:, 0].std():.2f}), diff gain {100 * rows[:, 1].mean():+.2f}; marked (α = {ALPHA}): "
              f"ensemble {power[effect, target][0]:.3f}, diff {power[effect, target][1]:.3f}; paper's t-test "
              f"{np.mean((rows[:, 4] < ALPHA) & (rows[:, 0] > 0)):.3f}")
    for alpha in LEVELS:
        nominal = np.floor(alpha * (NULL_PERMUTATIONS + 1) - 1e-9) / (NULL_PERMUTATIONS + 1)  # (1 + e)/41 < α
        assert abs(size[alpha] - nominal) <= 3 * error(nominal, NULL_REPLICATIONS), (alpha, size[alpha], nominal)
    assert abs(coverage - 0.95) <= 3 * error(0.95, NULL_REPLICATIONS), coverage
    for (effect, target), rows in planted.items():  # the planted gains are the ones asked for
        assert abs(100 * rows[:, 0].mean() - target) <= 0.25, (effect, target, rows[:, 0].mean())
    assert power["shift", 1.5][0] >= 0.7 and power["diverse", 1.5][0] >= 0.7
    assert power["diverse", 1.5][1] >= 0.7
    nominal = np.floor(ALPHA * (PERMUTATIONS + 1) - 1e-9) / (PERMUTATIONS + 1)
    assert power["shift", 1.5][1] <= nominal + 3 * error(nominal, PLANTED_REPLICATIONS)
    assert power["shift", 0.5][0] < power["shift", 1.5][0] and power["diverse", 0.5][0] < power["diverse", 1.5][0]
