"""Is one method's ensemble better than another's? Two tests, both reported; claims rest on the second.

(a) The paper's: Student's t-test over the combination scores of the two methods. Combinations share members
(and examples), so they are not the independent samples the test assumes; it is anti-conservative (in the null
simulation of `mte.analysis.simulate` it rejects far more often than its nominal α).

(b) The seed-level permutation test. Seed s of method A and seed s of method B form a pair (they share the
head initialisation and data order); under "no difference" the two members of a pair are exchangeable. Each
permutation swaps the members of a random subset of pairs (within their group, since a pair is one seed) and
recomputes the statistic exactly as Table 1 computes it (every 5-member combination within each group). The
p-value of a mark is one-sided (H1: A is better than B): the share of permuted statistics at least as large as
the observed one. A mark claims a direction, so a two-sided p with "and the gain is positive" would be a test at
α/2; the two-sided p is kept beside it for a reader who asks "different at all?". With 2^S ≤ the number asked
for, all 2^S swaps are enumerated (exact); either way the smallest p is 1 / (the statistics counted). The rate
of false marks is checked against α by simulation in the test suite.

The interval for Δ = ensemble(A) − ensemble(B) is a stratified delete-one-pair jackknife: Δ is a mean over
seed groups of each group's mean over its combinations, so the groups are strata. Deleting pair s of group h
changes only that group's mean (the mean over its combinations without seed s, scores already computed), and the
variance is Σ_h (n_h − 1)/n_h Σ_s (Δ_(h,s) − mean_h)², with S − H degrees of freedom. An unstratified
jackknife adds the spread between the groups' means, which Δ does not have (the groups weigh the same by
design), and over-covers. A group whose combinations all contain every seed (as many seeds as members) cannot
lose a pair: no interval then. Its coverage is checked by the same simulation.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import t as student_t
from scipy.stats import ttest_ind

from mte.analysis.ensembles import (
    Combinations,
    MethodEnsembles,
    binary_counts,
    combination_scores,
    seed_groups,
    table_score,
)
from mte.metrics import binary_from_counts, predictions, score
from mte.tasks import TaskSpec

_TIE = 1e-12  # permuted statistics within this of the observed one count as "as extreme" (float noise)


def t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Student's t-test (equal variances) of samples a and b; nan if undefined."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical constant samples: nan, said as "—"
        return float(ttest_ind(a, b).pvalue)


@dataclass
class Comparison:
    """Method A against method B on one task, per metric: the observed differences and both tests' p-values."""

    a: str
    b: str
    seeds: list[int]  # the pairs compared (seeds both methods have)
    gain: dict[str, float]  # ensemble(A) − ensemble(B)
    diff_gain: dict[str, float]  # (ensemble − single)(A) − (ensemble − single)(B)
    p_perm: dict[str, float]  # seed-level permutation test of `gain`, one-sided (A better): what marks use
    p_perm_diff: dict[str, float]  # ... of `diff_gain`
    p_perm_two_sided: dict[str, float]  # the same tests, two-sided
    p_perm_diff_two_sided: dict[str, float]
    p_ttest: dict[str, float]  # the paper's t-test over combination scores (ensemble)
    p_ttest_diff: dict[str, float]  # ... over combination diffs (ensemble − mean single of its members)
    ci_low: dict[str, float]  # jackknife interval of `gain`
    ci_high: dict[str, float]
    permutations: int  # permuted statistics the p-values rest on (2^S when enumerated)
    exact: bool
    p_holm: dict[str, float] = field(default_factory=dict)  # `p_perm` Holm-adjusted over the report's family
    p_holm_diff: dict[str, float] = field(default_factory=dict)

    @property
    def smallest_p(self) -> float:
        """The smallest p-value the test can give: the observed statistic counts among the permuted ones."""
        return 1.0 / self.permutations


def pair_outputs(a: MethodEnsembles, b: MethodEnsembles) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The seeds both methods have, and their outputs in that order: (seeds, A (S, n, k), B (S, n, k))."""
    common = sorted(set(a.seeds) & set(b.seeds))
    ia = [a.seeds.index(s) for s in common]
    ib = [b.seeds.index(s) for s in common]
    return common, a.outputs[ia], b.outputs[ib]


def swap_patterns(n_pairs: int, permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """(P, S) bool: which pairs each permutation swaps. All 2^S patterns (exact) when that is ≤ `permutations`,
    else the identity plus random ones."""
    if n_pairs <= 20 and 2**n_pairs <= permutations:
        return np.array(list(itertools.product([False, True], repeat=n_pairs)), dtype=bool).reshape(-1, n_pairs), True
    rng = np.random.default_rng(seed)
    random = rng.random((permutations, n_pairs)) < 0.5
    return np.concatenate([np.zeros((1, n_pairs), dtype=bool), random]), False


def statistics(task: TaskSpec, a: np.ndarray, b: np.ndarray, labels: np.ndarray, comb: Combinations,
               swap: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(gain, diff gain) per metric, Table 1's quantities, for each row of `swap` (P, S): the member sets where
    the pairs marked True trade places. a, b: (S, n, k) member outputs. Returns metric → (P,)."""
    if task.num_labels == 2:  # one margin column per member, every ensemble of every pattern in one product
        pos, n = int(np.count_nonzero(labels == 1)), len(labels)
        order = np.argsort(labels != 1, kind="stable")  # positives first, as `binary_counts` wants them
        labels = labels[order]
        ma, mb = (x[:, order, 1] - x[:, order, 0] for x in (a, b))  # (S, n)
        sides = []
        for first, second in ((ma, mb), (mb, ma)):
            margin = np.where(swap.T[:, :, None], second[:, None], first[:, None])  # (S, P, n)
            counts = binary_counts(margin, labels, comb)  # (C, P, 2)
            ensembles = binary_from_counts(counts[..., 0], counts[..., 1], pos, n)  # metric → (C, P)
            single_pred = margin > 0
            singles = binary_from_counts(np.count_nonzero(single_pred[..., labels == 1], -1),
                                         np.count_nonzero(single_pred, -1), pos, n)  # metric → (S, P)
            sides.append(({m: comb.weights @ ensembles[m] for m in task.metrics},
                          {m: singles[m].mean(0) for m in task.metrics}))
    else:
        sides = []
        for first, second in ((a, b), (b, a)):
            x = np.where(swap[:, :, None, None], second, first)  # (P, S, n, k)
            sides.append((table_score(combination_scores(task, x, labels, comb), comb),
                          {m: v.mean(-1) for m, v in score(task, predictions(task, x), labels).items()}))
    (ta, sa), (tb, sb) = sides
    gain = {m: ta[m] - tb[m] for m in task.metrics}
    diff = {m: (ta[m] - sa[m]) - (tb[m] - sb[m]) for m in task.metrics}
    return gain, diff


@dataclass
class PermutationResult:
    gain: dict[str, float]  # one-sided p of the gain (A better than B)
    diff: dict[str, float]  # one-sided p of the diff gain
    gain_two_sided: dict[str, float]
    diff_two_sided: dict[str, float]
    total: int  # permuted statistics counted, the identity included
    exact: bool


def permutation_p(task: TaskSpec, a: np.ndarray, b: np.ndarray, labels: np.ndarray, comb: Combinations,
                  permutations: int = 1000, seed: int = 0, batch: int = 50) -> PermutationResult:
    """p-values of the seed-level permutation test of (gain, diff gain) per metric, one- and two-sided, with the
    number of permuted statistics and whether they were all 2^S (see the module docstring)."""
    patterns, exact = swap_patterns(a.shape[0], permutations, seed)
    observed = statistics(task, a, b, labels, comb, patterns[:1] & False)
    above = [{m: 0 for m in task.metrics} for _ in observed]
    extreme = [{m: 0 for m in task.metrics} for _ in observed]
    for start in range(0, len(patterns), batch):
        permuted = statistics(task, a, b, labels, comb, patterns[start:start + batch])
        for up, both, obs, perm in zip(above, extreme, observed, permuted, strict=True):
            for m in task.metrics:
                up[m] += int(np.count_nonzero(perm[m] >= obs[m][0] - _TIE))
                both[m] += int(np.count_nonzero(np.abs(perm[m]) >= np.abs(obs[m][0]) - _TIE))
    # Random draws include the identity, so hits / (P + 1) is the usual (1 + e) / (1 + P).
    total = len(patterns)
    one = [{m: h[m] / total for m in task.metrics} for h in above]
    two = [{m: h[m] / total for m in task.metrics} for h in extreme]
    return PermutationResult(one[0], one[1], two[0], two[1], total, exact)


def jackknife_interval(by_group: list[np.ndarray], gain: float, level: float) -> tuple[float, float]:
    """Stratified delete-one-pair jackknife interval around `gain` (Student's t with S − H degrees of freedom):
    `by_group` holds, per group (stratum), Δ recomputed without each of its pairs."""
    if not by_group or not all(np.all(np.isfinite(g)) for g in by_group):
        return float("nan"), float("nan")
    df = sum(len(g) - 1 for g in by_group)
    if df < 1:
        return float("nan"), float("nan")
    var = sum((len(g) - 1) / len(g) * np.sum((g - g.mean()) ** 2) for g in by_group)
    half = student_t.ppf(0.5 + level / 2, df) * np.sqrt(var)
    return float(gain - half), float(gain + half)


def delete_one_pair(d: np.ndarray, comb: Combinations, groups: list[np.ndarray], gain: float) -> list[np.ndarray]:
    """Per group that forms ensembles: Δ without each of its pairs (nan where the group would have none left).
    d: (C,) ensemble(A) − ensemble(B) of each combination; Δ is the mean over groups of their means."""
    present = np.flatnonzero(np.bincount(comb.group, minlength=len(groups)))
    out = []
    for h in present:
        rows = comb.group == h
        mean = d[rows].mean()
        left = [rows & ~comb.members[:, i] for i in groups[h]]
        out.append(np.array([gain + (d[k].mean() - mean) / len(present) if k.any() else np.nan for k in left]))
    return out


def compare(task: TaskSpec, labels: np.ndarray, a: MethodEnsembles, b: MethodEnsembles, sizes: tuple[int, ...],
            permutations: int = 1000, seed: int = 0, level: float = 0.95) -> Comparison | None:
    """A against B with Table 1's ensembles of `sizes`, over the seeds both have (None if they cannot form them)."""
    seeds, xa, xb = pair_outputs(a, b)
    if len(seeds) < 2:
        return None
    groups = seed_groups(seeds)
    comb = Combinations.concat([Combinations.within(groups, len(seeds), m) for m in sizes])
    if len(comb) == 0:
        return None
    sa, sb = (combination_scores(task, x, labels, comb) for x in (xa, xb))
    single_a, single_b = (score(task, predictions(task, x), labels) for x in (xa, xb))
    ta, tb = table_score(sa, comb), table_score(sb, comb)
    gain = {m: float(ta[m] - tb[m]) for m in task.metrics}
    diff_gain = {m: float((ta[m] - single_a[m].mean()) - (tb[m] - single_b[m].mean())) for m in task.metrics}
    perm = permutation_p(task, xa, xb, labels, comb, permutations, seed)
    size_of = comb.sizes
    p_t, p_t_diff, lo, hi = {}, {}, {}, {}
    for m in task.metrics:
        p_t[m] = t_test(sa[m], sb[m])
        da = sa[m] - comb.members @ single_a[m] / size_of  # each ensemble minus the mean of its members
        db = sb[m] - comb.members @ single_b[m] / size_of
        p_t_diff[m] = t_test(da, db)
        by_group = delete_one_pair(sa[m] - sb[m], comb, groups, gain[m])
        lo[m], hi[m] = jackknife_interval(by_group, gain[m], level)
    return Comparison(a.method, b.method, seeds, gain, diff_gain, perm.gain, perm.diff, perm.gain_two_sided,
                      perm.diff_two_sided, p_t, p_t_diff, lo, hi, perm.total, perm.exact)


def better(gain: float, p: float, alpha: float) -> bool:
    """The definition of a mark: the one-sided p (H1: better) is below α, so false marks occur at rate α (checked
    by simulation). The gain must be positive too, which a one-sided p below α implies but for a test with very
    few permutations."""
    return bool(np.isfinite(p) and gain > 0 and p < alpha)
