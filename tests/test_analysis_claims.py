"""What Table 1 claims: one-sided marks, diff marks only with a better ensemble, Holm's adjustment, a warning
whenever no mark is reachable, "did not learn" on every task's headline metric, winning tickets per ticket."""

import numpy as np
import pytest

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse
from mte.analysis.learning import trivial, winning_tickets
from mte.analysis.marks import holm
from mte.tasks import get_task

MRPC, STSB, COLA = get_task("mrpc"), get_task("sts-b"), get_task("cola")


def binary(rng, methods, seeds, n=200, strength=1.0):
    labels = rng.integers(0, 2, n)
    members = []
    for method in methods:
        for s in seeds:
            z = np.where(labels == 1, 1.0, -1.0) * strength + rng.normal(size=n)
            members.append(Member(method, s, np.stack([-z, z], 1).astype(np.float32)))
    return labels, members


def test_holm_equals_the_step_down_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02, np.nan], rtol=1e-12)
    assert holm([0.6, 0.7])[1] == 1.0 and holm([]).size == 0


def test_a_diff_is_not_marked_when_the_singles_are_worse_and_the_ensembles_equal():
    """BASELINE: 20 copies of one model (ensemble = single). RANDOM-LT: that model plus independent noise per seed,
    so its singles are worse and its ensembles about equal: its diff is larger than BASELINE's (p < 0.05, which
    the old rule marked †), but that is no gain from ensembling, so no † and the § label."""
    rng = np.random.default_rng(7)
    n = 300
    labels = rng.integers(0, 2, n)
    z = np.where(labels == 1, 0.8, -0.8) + rng.normal(size=n)
    members = []
    for s in range(20):
        noisy = z + rng.normal(scale=0.5, size=n)
        members += [Member("baseline", s, np.stack([-z, z], 1).astype(np.float32)),
                    Member("random-lt", s, np.stack([-noisy, noisy], 1).astype(np.float32))]
    a = analyse(ResultSet.from_members(MRPC, labels, members), AnalysisOptions(permutations=200))
    row = a.table1.set_index("method").loc["random-lt"]
    single_gain = row["accuracy_single"] - a.table1.set_index("method").loc["baseline", "accuracy_single"]
    assert single_gain < -0.01 and abs(row["accuracy_gain"]) < 0.005  # singles worse, ensembles equal
    assert row["accuracy_diff_gain_vs_baseline"] > 0 and row["accuracy_p_diff_vs_baseline"] < 0.05
    assert row["accuracy_p_vs_baseline"] > 0.05 and row["accuracy_mark"] == ""
    assert row["accuracy_diff_mark"] == "§"


def test_marks_use_the_one_sided_p_and_holm_is_over_every_test_of_the_report():
    rng = np.random.default_rng(5)
    labels, members = binary(rng, ["baseline", "base-lt", "random-lt"], range(20))
    for m in members:  # RANDOM-LT's members a little better
        if m.method == "random-lt":
            m.dev_logits[:, 1] += np.where(labels == 1, 0.5, -0.5)
            m.dev_logits[:, 0] -= np.where(labels == 1, 0.5, -0.5)
    a = analyse(ResultSet.from_members(MRPC, labels, members), AnalysisOptions(permutations=300))
    t = a.tests
    assert a.family == len(t) == 4 * 2 * len(MRPC.metrics)  # 4 (method, reference) pairs, ensemble and diff
    np.testing.assert_allclose(t.p_holm, holm(t.p_permutation))
    assert (t.p_holm >= t.p_permutation).all()
    better = t[(t.method == "random-lt") & (t.reference == "baseline") & (t.metric == "accuracy")
               & (t.quantity == "ensemble")].iloc[0]
    worse = t[(t.method == "baseline") & (t.reference == "random-lt")]
    assert worse.empty  # only the references are compared against
    assert better.difference > 0 and better.p_permutation < 0.05
    assert better.p_permutation_two_sided >= better.p_permutation
    assert a.table1.set_index("method").loc["random-lt", "accuracy_mark"] in ("†", "‡")
    # a method worse than its reference: one-sided p near 1 (no mark), though its two-sided p may be small
    base = t[(t.method == "baseline") & (t.reference == "base-lt")]
    assert ((base.difference < 0) <= (base.p_permutation > 0.5)).all()


@pytest.mark.parametrize(("permutations", "seeds", "reachable"),
                         [(10, range(20), False), (19, range(20), False), (20, range(20), True),
                          (1000, [0, 1, 2, 3], False), (1000, [0, 1, 2, 3, 4], True)])
def test_a_warning_whenever_no_mark_is_reachable(permutations, seeds, reachable):
    """The smallest p is 1/(permutations + 1) drawn, 1/2^pairs enumerated: a warning exactly when it is ≥ α."""
    labels, members = binary(np.random.default_rng(1), ["baseline", "random-lt"], seeds, n=60)
    a = analyse(ResultSet.from_members(MRPC, labels, members),
                AnalysisOptions(sizes=(2,), permutations=permutations))
    warned = [w for w in a.warnings if "cannot reach p < 0.05" in w]
    assert bool(warned) != reachable, a.warnings
    if not reachable and permutations < 1000:
        assert f"with {permutations} random permutations" in warned[0] and "--permutations 20" in warned[0]
    if not reachable and permutations == 1000:
        assert "with 4 seed pair(s)" in warned[0] and "1/2^pairs = 0.0625" in warned[0]


def test_sts_b_models_with_negative_pearson_did_not_learn_and_are_no_winning_tickets():
    rng = np.random.default_rng(3)
    n = 150
    labels = rng.uniform(0, 5, n)
    members = [Member(method, s, (-labels + rng.normal(scale=2.0, size=n))[:, None].astype(np.float32))
               for method in ("baseline", "random-lt") for s in range(10)]
    a = analyse(ResultSet.from_members(STSB, labels, members), AnalysisOptions(permutations=50))
    assert (a.table1.pearson_single < 0).all()
    assert any(w.startswith("mean single pearson ×100 not above 16.3 (a constant prediction: 0.0 + 2 standard "
                            "errors): baseline -") and ", random-lt -" in w for w in a.warnings), a.warnings
    t = a.table1.set_index("method")
    row, base = t.loc["random-lt"], t.loc["baseline"]
    # the old rule (mean single ≥ BASELINE's mean − 1 sd) called RANDOM-LT a winning ticket
    assert row["pearson_single"] >= base["pearson_single"] - base["pearson_single_std"]
    assert row["winning_tickets"] == 0 and row["winning_share"] == 0


def test_cola_checks_matthews_against_a_constant_prediction():
    rng = np.random.default_rng(4)
    labels, members = binary(rng, ["baseline", "random-lt"], range(10), n=400, strength=0.0)  # guesses
    a = analyse(ResultSet.from_members(COLA, labels, members), AnalysisOptions(permutations=50))
    assert a.headline == "matthews"
    assert any(w.startswith("mean single matthews ×100 not above 10.0 (a constant prediction") for w in a.warnings)
    labels, members = binary(rng, ["baseline", "random-lt"], range(10), n=400, strength=1.0)
    learned = analyse(ResultSet.from_members(COLA, labels, members), AnalysisOptions(permutations=50))
    assert not any("did not learn" in w for w in learned.warnings), learned.warnings


def test_trivial_predictors():
    labels = np.array([1] * 68 + [0] * 32)
    assert trivial("accuracy", labels).score == 0.68
    assert trivial("accuracy", labels).floor == pytest.approx(0.68 + 2 * np.sqrt(0.68 * 0.32 / 100))
    assert trivial("f1", labels).score == pytest.approx(2 * 0.68 / 1.68)  # all positive: precision .68, recall 1
    assert trivial("matthews", labels).score == 0 and trivial("pearson", labels).floor == pytest.approx(0.2)


def test_winning_tickets_are_counted_per_ticket_against_dense_mean_minus_one_sd():
    dense = np.array([0.80, 0.82, 0.84])  # mean 0.82, sd 0.02: threshold 0.80
    tickets = np.array([0.79, 0.80, 0.81, 0.90, 0.85])
    learned = np.array([True, True, True, True, False])
    t = winning_tickets(tickets, dense, learned)
    assert t.threshold == pytest.approx(0.80)
    assert (t.winning, t.learned, t.total) == (3, 4, 5)  # 0.80 counts (≥); the unlearned 0.85 does not
    assert t.share == pytest.approx(0.6)
    assert winning_tickets(tickets, dense[:1], learned) is None
