"""Significance: t-tests equal scipy's, marks follow the paper, the bootstrap re-scores resamples exactly."""

import numpy as np
import pytest
from scipy.stats import ttest_ind
from sklearn.metrics import f1_score, matthews_corrcoef

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse
from mte.analysis.ensembles import Combos, evaluate
from mte.analysis.significance import (
    bootstrap_weights,
    mark,
    percentile_interval,
    protocol_resamples,
    resampled_scores,
    t_test,
)
from mte.metrics import CLASSIFICATION, REGRESSION, f1, matthews
from mte.tasks import get_task

MRPC = get_task("mrpc")
METRICS = {"accuracy", "f1", "matthews", "pearson", "spearman"}


def sweep(rng, methods, seeds=8, n=60, shift=None):
    labels = rng.integers(0, 2, n)
    members = []
    for j, method in enumerate(methods):
        for s in range(seeds):
            z = np.where(labels == 1, 1.0, -1.0) * (0.6 + (shift or {}).get(method, 0.0) * j) + rng.normal(size=n)
            members.append(Member(method, s, np.stack([-z, z], 1).astype(np.float32)))
    return ResultSet.from_members(MRPC, labels, members)


def test_t_test_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(0.3, size=45)
    assert t_test(a, b) == ttest_ind(a, b).pvalue
    assert np.isnan(t_test(a[:1], b))


def test_table_p_values_are_scipy_t_tests_of_the_combination_scores():
    rs = sweep(np.random.default_rng(1), ["baseline", "base-lt", "random-lt"])
    a = analyse(rs, AnalysisOptions(groups=2, sizes=(2, 3), resamples=100))
    pooled = {m: evaluate(rs, m, 2, (2, 3)).pooled((2, 3))[1] for m in rs.methods}
    row = a.table1.set_index("method").loc["random-lt"]
    for k in MRPC.metrics:
        assert row[f"{k}_p_vs_baseline"] == ttest_ind(pooled["random-lt"][k], pooled["baseline"][k]).pvalue
        assert row[f"{k}_p_vs_base_lt"] == ttest_ind(pooled["random-lt"][k], pooled["base-lt"][k]).pvalue
    base = a.table1.set_index("method").loc["baseline"]
    assert np.isnan(base["accuracy_p_vs_baseline"]) and base["accuracy_mark"] == ""


def test_marks():
    assert mark((0.01, 0.01), (0.01, 0.01)) == "‡"
    assert mark((0.01, 0.01), (0.01, 0.2)) == "†"
    assert mark((0.01, 0.01), (-0.01, 0.01)) == "†"  # significantly worse than BASE-LT: no ‡
    assert mark((0.01, 0.01), None) == "†"  # no BASE-LT in the sweep
    assert mark((-0.01, 0.001), (0.01, 0.01)) == ""  # significantly worse than BASELINE
    assert mark((0.01, float("nan")), None) == ""


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_unit_weights_give_the_metric(metric):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 50) if metric in {"accuracy", "f1", "matthews"} else rng.normal(size=50)
    pred = rng.integers(0, 2, (7, 50)) if metric in {"accuracy", "f1", "matthews"} else rng.normal(size=(7, 50))
    expected = (CLASSIFICATION | REGRESSION)[metric](pred, labels)
    np.testing.assert_allclose(resampled_scores(metric, pred, labels, np.ones((3, 50)))[1], expected, rtol=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews", "pearson"])
def test_weights_give_the_metric_of_the_resampled_examples(metric):
    rng = np.random.default_rng(3)
    n = 40
    regression = metric == "pearson"
    labels = rng.normal(size=n) if regression else rng.integers(0, 2, n)
    pred = rng.normal(size=(5, n)) if regression else np.where(rng.random((5, n)) < 0.7, labels, 1 - labels)
    w = bootstrap_weights(n, resamples=20, seed=4)
    got = resampled_scores(metric, pred, labels, w)
    fn = (CLASSIFICATION | REGRESSION)[metric]
    for b in range(20):
        idx = np.repeat(np.arange(n), w[b].astype(int))  # the resample itself
        np.testing.assert_allclose(got[b], fn(pred[:, idx], labels[idx]), rtol=1e-10, atol=1e-12)


def test_accuracy_shortcut_equals_rescoring_every_combination():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 30)
    combos = Combos(rng.integers(0, 2, (9, 30)), np.array([0] * 6 + [1] * 3))
    w = bootstrap_weights(30, 50, seed=1)
    np.testing.assert_allclose(protocol_resamples("accuracy", combos, labels, w),
                               resampled_scores("accuracy", combos.pred, labels, w) @ combos.weights, rtol=1e-6)


def test_bootstrap_is_seeded_and_zero_for_identical_methods():
    np.testing.assert_array_equal(bootstrap_weights(10, 5, seed=1), bootstrap_weights(10, 5, seed=1))
    assert not np.array_equal(bootstrap_weights(10, 5, seed=1), bootstrap_weights(10, 5, seed=2))
    assert (bootstrap_weights(10, 5).sum(1) == 10).all()
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 40)
    same = list(rng.normal(size=(6, 40, 2)))
    rs = ResultSet.from_members(MRPC, labels, [Member(m, s, x.astype(np.float32))
                                               for m in ("baseline", "bagging") for s, x in enumerate(same)])
    row = analyse(rs, AnalysisOptions(groups=2, sizes=(2, 3), resamples=200)).table1.set_index("method").loc["bagging"]
    assert row["accuracy_gain"] == row["accuracy_gain_ci_low"] == row["accuracy_gain_ci_high"] == 0
    assert row["accuracy_mark"] == ""


def test_bootstrap_interval_covers_a_clear_gain():
    rs = sweep(np.random.default_rng(7), ["baseline", "base-lt"], seeds=6, n=300, shift={"base-lt": 1.0})
    row = analyse(rs, AnalysisOptions(groups=2, sizes=(2, 3), resamples=300)).table1.set_index("method").loc["base-lt"]
    assert 0 < row["accuracy_gain_ci_low"] < row["accuracy_gain"] < row["accuracy_gain_ci_high"]
    assert row["accuracy_mark"] == "†"  # better than BASELINE; it is BASE-LT itself, so no ‡
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))


def test_count_based_metrics_still_match_sklearn():
    rng = np.random.default_rng(8)
    y, p = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    assert f1(p, y) == pytest.approx(f1_score(y, p))
    assert matthews(p, y) == pytest.approx(matthews_corrcoef(y, p))
    assert f1(np.zeros(5), np.zeros(5)) == 0 and matthews(np.ones(5), np.ones(5)) == 0
