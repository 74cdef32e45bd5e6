"""Significance: the paper's t-test equals scipy's over the combination scores; the seed-level permutation test and
the jackknife interval equal brute-force recomputations; marks follow the permutation test."""

from itertools import combinations, product

import numpy as np
import pytest
from scipy.stats import t as student_t
from scipy.stats import ttest_ind

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse
from mte.analysis.ensembles import evaluate, member_outputs
from mte.analysis.significance import compare, swap_patterns, t_test
from mte.metrics import task_metrics
from mte.tasks import get_task

MRPC, STSB, MNLI = get_task("mrpc"), get_task("sts-b"), get_task("mnli")


def sweep(rng, task, methods, seeds, n=60, shift=None):
    labels = rng.normal(size=n) if task.is_regression else rng.integers(0, task.num_labels, n)
    members = []
    for method in methods:
        for s in seeds:
            if task.is_regression:
                logits = (labels + (shift or {}).get(method, 0.0) + rng.normal(size=n))[:, None]
            else:
                logits = rng.normal(size=(n, task.num_labels))
                logits[np.arange(n), labels] += 1.0 + (shift or {}).get(method, 0.0)
            members.append(Member(method, s, logits.astype(np.float32)))
    return ResultSet.from_members(task, labels, members)


def table_by_loop(task, outputs, labels, seeds, size):
    """Table 1's score the slow way: groups by seed id, every combination scored on its own."""
    groups = {}
    for i, s in enumerate(seeds):
        groups.setdefault(s // 10, []).append(i)
    per_group = [np.mean([task_metrics(task, outputs[list(c)].mean(0), labels)[task.metrics[0]]
                          for c in combinations(g, size)]) for g in groups.values() if len(g) >= size]
    return float(np.mean(per_group))


def test_t_test_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(0.3, size=45)
    assert t_test(a, b) == ttest_ind(a, b).pvalue
    assert np.isnan(t_test(a[:1], b))


def test_paper_t_test_columns_are_scipy_over_the_combination_scores():
    rs = sweep(np.random.default_rng(1), MRPC, ["baseline", "base-lt", "random-lt"], range(6))
    a = analyse(rs, AnalysisOptions(sizes=(2, 3), permutations=20))
    pooled = {m: evaluate(rs, m, (2, 3)).table((2, 3))[1] for m in rs.methods}
    row = a.table1.set_index("method").loc["random-lt"]
    for k in MRPC.metrics:
        assert row[f"{k}_ttest_p_vs_baseline"] == ttest_ind(pooled["random-lt"][k], pooled["baseline"][k]).pvalue
        assert row[f"{k}_ttest_p_vs_base_lt"] == ttest_ind(pooled["random-lt"][k], pooled["base-lt"][k]).pvalue
    base = a.table1.set_index("method").loc["baseline"]
    assert np.isnan(base["accuracy_p_vs_baseline"]) and base["accuracy_mark"] == ""


@pytest.mark.parametrize("task", [MRPC, MNLI, STSB], ids=lambda t: t.name)
def test_permutation_test_equals_brute_force_enumeration(task):
    """4 seed pairs in two groups (seeds 0–2 and 10): all 16 swap patterns, each statistic recomputed by the loop."""
    rng = np.random.default_rng(2)
    seeds = [0, 1, 2, 10]
    rs = sweep(rng, task, ["baseline", "bagging"], seeds, n=25, shift={"bagging": 0.4})
    a, b = evaluate(rs, "bagging", (2,)), evaluate(rs, "baseline", (2,))
    c = compare(rs.task, rs.labels, a, b, (2,), permutations=1000)
    assert c.exact and c.permutations == 16
    xa, xb = (member_outputs(task, rs.logits(m)) for m in ("bagging", "baseline"))
    k = task.metrics[0]
    observed = table_by_loop(task, xa, rs.labels, seeds, 2) - table_by_loop(task, xb, rs.labels, seeds, 2)
    assert c.gain[k] == pytest.approx(observed, abs=1e-12)
    extreme = above = 0
    for swap in product([False, True], repeat=4):
        s = np.array(swap)[:, None, None]
        pa, pb = np.where(s, xb, xa), np.where(s, xa, xb)
        stat = table_by_loop(task, pa, rs.labels, seeds, 2) - table_by_loop(task, pb, rs.labels, seeds, 2)
        extreme += abs(stat) >= abs(observed) - 1e-12
        above += stat >= observed - 1e-12
    assert c.p_perm[k] == above / 16  # one-sided (H1: bagging is better): what the marks use
    assert c.p_perm_two_sided[k] == extreme / 16
    assert c.smallest_p == 1 / 16


def test_identical_methods_have_no_difference_and_p_one():
    rng = np.random.default_rng(3)
    same = sweep(rng, MRPC, ["baseline"], range(12))
    rs = ResultSet.from_members(MRPC, same.labels, [*same.members["baseline"],
                                                    *[Member("bagging", m.seed, m.dev_logits)
                                                      for m in same.members["baseline"]]])
    row = analyse(rs, AnalysisOptions(permutations=200)).table1.set_index("method").loc["bagging"]
    assert row["accuracy_gain"] == row["accuracy_gain_ci_low"] == row["accuracy_gain_ci_high"] == 0
    assert row["accuracy_p_vs_baseline"] == 1.0 and row["accuracy_mark"] == ""


def test_jackknife_interval_equals_stratified_delete_one_pair_recomputation():
    rng = np.random.default_rng(4)
    seeds = [0, 1, 2, 3, 10, 11, 12, 13, 14]
    rs = sweep(rng, MRPC, ["baseline", "base-lt"], seeds, n=40, shift={"base-lt": 0.3})
    c = compare(rs.task, rs.labels, evaluate(rs, "base-lt", (3,)), evaluate(rs, "baseline", (3,)), (3,),
                permutations=10, level=0.9)
    xa, xb = (member_outputs(MRPC, rs.logits(m)) for m in ("base-lt", "baseline"))
    var = 0.0
    for group in ([0, 1, 2, 3], [4, 5, 6, 7, 8]):  # strata: the seed groups, each jackknifed on its own
        by_pair = []
        for i in group:
            keep = [j for j in range(len(seeds)) if j != i]
            rest = [seeds[j] for j in keep]
            by_pair.append(table_by_loop(MRPC, xa[keep], rs.labels, rest, 3)
                           - table_by_loop(MRPC, xb[keep], rs.labels, rest, 3))
        n = len(group)
        var += (n - 1) / n * np.sum((np.array(by_pair) - np.mean(by_pair)) ** 2)
    half = student_t.ppf(0.95, len(seeds) - 2) * np.sqrt(var)
    assert half > 0
    assert (c.ci_low["accuracy"], c.ci_high["accuracy"]) == pytest.approx(
        (c.gain["accuracy"] - half, c.gain["accuracy"] + half), abs=1e-12)
    # A group with as many seeds as members cannot lose a pair: no interval rather than a wrong one.
    short = compare(rs.task, rs.labels, evaluate(rs, "base-lt", (4,)), evaluate(rs, "baseline", (4,)), (4,),
                    permutations=10)
    assert np.isnan(short.ci_low["accuracy"]) and np.isnan(short.ci_high["accuracy"])


def test_marks_follow_the_permutation_test():
    rng = np.random.default_rng(5)
    rs = sweep(rng, MRPC, ["baseline", "base-lt", "random-lt"], range(20), n=200,
               shift={"base-lt": 0.6, "random-lt": 1.4})
    t = analyse(rs, AnalysisOptions(permutations=200)).table1.set_index("method")
    assert t.loc["random-lt", "accuracy_p_vs_baseline"] < 0.05 and t.loc["random-lt", "accuracy_p_vs_base_lt"] < 0.05
    assert t.loc["random-lt", "accuracy_mark"] == "‡" and bool(t.loc["random-lt", "accuracy_ensemble_best"])
    assert t.loc["base-lt", "accuracy_mark"] == "†"  # better than BASELINE; it is BASE-LT itself, so no ‡
    assert t.loc["baseline", "accuracy_mark"] == ""
    assert t.loc["random-lt", "winning_share"] == 1 and np.isnan(t.loc["baseline", "winning_share"])


def test_swap_patterns_enumerate_or_draw_with_the_identity_first():
    every, exact = swap_patterns(3, 1000, 0)
    assert exact and len({tuple(r) for r in every}) == 8
    drawn, exact = swap_patterns(20, 99, 0)
    assert not exact and drawn.shape == (100, 20) and not drawn[0].any()
