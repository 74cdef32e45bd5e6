"""Calibration (NLL, ECE with 15 bins, Brier) of single models and Table 1's ensembles equals a loop over
members and combinations; the report shows it (table, reliability diagram, CSVs) and Table 1 carries it, so the
sweep's parent run records it as metrics."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse, build_report
from mte.analysis.calibration import measures
from mte.tasks import get_task

MRPC, MNLI, STSB = get_task("mrpc"), get_task("mnli"), get_task("sts-b")


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ece_by_loop(prob, labels, bins=15):
    conf, pred = prob.max(1), prob.argmax(1)
    total = 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        inside = (conf > lo) & (conf <= hi) if i else (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return total


def sweep(rng, task, methods, seeds, n=80):
    labels = rng.integers(0, task.num_labels, n)
    members = []
    for method in methods:
        for s in seeds:
            logits = rng.normal(scale=1.5, size=(n, task.num_labels))
            logits[np.arange(n), labels] += 1.2
            members.append(Member(method, s, logits.astype(np.float32)))
    return ResultSet.from_members(task, labels, members)


@pytest.mark.parametrize("task", [MRPC, MNLI], ids=lambda t: t.name)
def test_measures_equal_sklearn_and_a_loop_over_bins(task):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, task.num_labels, 300)
    prob = softmax(rng.normal(scale=2.0, size=(4, 300, task.num_labels)))
    m = measures(prob, labels)
    for i in range(4):
        assert m["nll"][i] == pytest.approx(log_loss(labels, prob[i], labels=range(task.num_labels)), rel=1e-9)
        assert m["ece"][i] == pytest.approx(ece_by_loop(prob[i], labels), abs=1e-12)
        onehot = np.eye(task.num_labels)[labels]
        assert m["brier"][i] == pytest.approx(((prob[i] - onehot) ** 2).sum(1).mean(), rel=1e-12)
    if task.num_labels == 2:  # sklearn's binary Brier is the positive class only: half of the two-class sum
        assert m["brier"][0] == pytest.approx(2 * brier_score_loss(labels, prob[0][:, 1]), rel=1e-9)


@pytest.mark.parametrize("combine", ["probabilities", "logits"])
def test_single_and_ensemble_calibration_equal_a_loop_over_members_and_combinations(combine):
    rng = np.random.default_rng(1)
    seeds = [0, 1, 2, 3, 4, 10, 11, 12, 13]  # two groups: 5 and 4 seeds
    rs = sweep(rng, MNLI, ["baseline", "random-lt"], seeds)
    a = analyse(rs, AnalysisOptions(sizes=(3,), combine=combine, permutations=20))
    row = a.calibration.set_index("method").loc["random-lt"]
    logits = rs.logits("random-lt").astype(np.float64)
    single = [measures(softmax(x), rs.labels) for x in logits]
    for name in ("nll", "ece", "brier"):
        values = [s[name] for s in single]
        assert row[f"{name}_single"] == pytest.approx(np.mean(values), rel=1e-9)
        assert row[f"{name}_single_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    per_group = []
    for group in ([0, 1, 2, 3, 4], [5, 6, 7, 8]):
        scores = []
        for c in combinations(group, 3):
            prob = softmax(logits[list(c)].mean(0)) if combine == "logits" else softmax(logits[list(c)]).mean(0)
            scores.append(measures(prob, rs.labels))
        per_group.append({k: np.mean([s[k] for s in scores]) for k in ("nll", "ece", "brier")})
    for name in ("nll", "ece", "brier"):  # each group weighs the same, as in Table 1
        assert row[f"{name}_ensemble"] == pytest.approx(np.mean([g[name] for g in per_group]), rel=1e-9)
    t1 = a.table1.set_index("method").loc["random-lt"]
    assert t1["ece_ensemble"] == row["ece_ensemble"] and t1["nll_single_std"] == row["nll_single_std"]


def test_reliability_bins_pool_members_and_agree_with_ece():
    rng = np.random.default_rng(2)
    rs = sweep(rng, MRPC, ["baseline"], range(6))
    a = analyse(rs, AnalysisOptions(sizes=(2,), permutations=20))
    bins = a.reliability
    for kind in ("single", "ensemble"):
        d = bins[bins.kind == kind]
        assert len(d) == 15 and d.share.sum() == pytest.approx(1.0)
        ece = np.nansum(d.share * (d.accuracy - d.confidence).abs())
        if kind == "single":  # pooled over seeds, the share-weighted gap is at most the mean of the seeds' ECE
            assert ece <= a.calibration.ece_single.iloc[0] + 1e-12
    single = bins[bins.kind == "single"]
    prob = softmax(rs.logits("baseline").astype(np.float64)).reshape(-1, 2)
    labels = np.tile(rs.labels, 6)
    top = prob.max(1) > 14 / 15
    assert single.share.iloc[14] == pytest.approx(top.mean())
    assert single.accuracy.iloc[14] == pytest.approx((prob[top].argmax(1) == labels[top]).mean())


def test_the_report_shows_calibration_and_the_parent_run_gets_it(tmp_path):
    from tracking.load import report_metrics

    rs = sweep(np.random.default_rng(3), MRPC, ["baseline", "random-lt"], range(10))
    r = build_report(rs, tmp_path, AnalysisOptions(permutations=50))
    assert {"calibration", "reliability"} <= set(r.csvs) and "reliability" in r.figures
    assert r.figures["reliability"].read_bytes()[:4] == b"\x89PNG"
    md = r.markdown.read_text()
    assert "Table 3 and Figure 5: calibration" in md and "fig5_reliability.png" in md and "ECE ×100" in md
    assert pd.read_csv(r.csvs["calibration"]).shape == (2, 10)
    metrics = report_metrics(r.analysis)
    assert {"baseline/nll_single", "random-lt/ece_ensemble", "random-lt/brier_single_std"} <= set(metrics)


def test_regression_has_no_calibration(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.normal(size=40)
    members = [Member(m, s, (labels + rng.normal(size=40))[:, None].astype(np.float32))
               for m in ("baseline", "random-lt") for s in range(6)]
    r = build_report(ResultSet.from_members(STSB, labels, members), tmp_path, AnalysisOptions(permutations=20))
    assert r.analysis.calibration.empty and "reliability" not in r.figures and "calibration" not in r.csvs
    assert "Table 3" not in r.markdown.read_text() and "nll_single" not in r.analysis.table1
