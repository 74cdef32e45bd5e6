"""Ensembles: the vectorised protocol against hand-worked cases and a per-combination loop."""

from itertools import combinations

import numpy as np
import pytest

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse
from mte.analysis.ensembles import ensemble_predictions, evaluate, member_outputs, protocol_problem, split_groups
from mte.errors import MteError
from mte.metrics import task_metrics
from mte.tasks import get_task

MRPC, STSB, MNLI = get_task("mrpc"), get_task("sts-b"), get_task("mnli")


def resultset(task, labels, logits_by_method):
    return ResultSet.from_members(task, labels, [Member(m, s, np.asarray(x, np.float32))
                                                 for m, xs in logits_by_method.items() for s, x in enumerate(xs)])


def test_identical_members_ensemble_equals_single_and_diff_is_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    one = rng.normal(size=(50, 2))
    a = analyse(resultset(MRPC, labels, {"baseline": [one] * 6}), AnalysisOptions(groups=2, sizes=(2, 3), resamples=50))
    row = a.table1.iloc[0]
    expected = task_metrics(MRPC, one, labels)
    for k in MRPC.metrics:
        assert row[f"{k}_single"] == pytest.approx(expected[k])
        assert row[f"{k}_single_std"] == 0
        assert row[f"{k}_ensemble"] == pytest.approx(expected[k])
        assert row[f"{k}_diff"] == pytest.approx(0, abs=1e-12)


def test_hand_worked_two_member_ensemble_averages_probabilities_not_votes():
    # Member 0 is confidently wrong on example 0, member 1 mildly right: the mean probability follows member 0.
    labels = np.array([1, 0])
    m0 = np.log([[0.9, 0.1], [0.8, 0.2]])
    m1 = np.log([[0.4, 0.6], [0.7, 0.3]])
    combos = ensemble_predictions(MRPC, member_outputs(MRPC, np.stack([m0, m1])), groups=1, size=2)
    np.testing.assert_array_equal(combos.pred, [[0, 0]])  # mean p(1) = 0.35 and 0.25
    e = evaluate(resultset(MRPC, labels, {"baseline": [m0, m1]}), "baseline", groups=1, sizes=(2,))
    assert e.ensemble_score((2,))["accuracy"] == 0.5
    np.testing.assert_array_equal(e.single["accuracy"], [0.5, 1.0])


def test_regression_ensemble_is_the_mean_score():
    members = [np.array([[0.0], [1.0], [3.0], [2.0]]), np.array([[1.0], [0.0], [2.0], [4.0]])]
    combos = ensemble_predictions(STSB, member_outputs(STSB, np.stack(members)), groups=1, size=2)
    np.testing.assert_allclose(combos.pred, [[0.5, 0.5, 2.5, 3.0]])


def test_split_groups_is_seed_order_halves():
    groups = split_groups(20, 2)
    assert [g.tolist() for g in groups] == [list(range(10)), list(range(10, 20))]
    assert [len(g) for g in split_groups(7, 2)] == [4, 3]


def test_members_are_put_in_seed_order():
    labels = np.array([0, 1])
    members = [Member("baseline", s, np.zeros((2, 2), np.float32)) for s in (5, 1, 3)]
    assert ResultSet.from_members(MRPC, labels, members).seeds("baseline") == [1, 3, 5]


def loop_reference(task, logits, labels, groups, size):
    """The protocol written the slow, obvious way: one metric call per combination."""
    per_group = []
    for members in np.array_split(np.arange(len(logits)), groups):
        scores = []
        for c in combinations(members, size):
            out = np.mean([member_outputs(task, logits[i]) for i in c], axis=0)
            scores.append(task_metrics(task, out, labels))
        per_group.append({k: np.mean([s[k] for s in scores]) for k in task.metrics})
    return {k: np.mean([g[k] for g in per_group]) for k in task.metrics}


@pytest.mark.parametrize("task", [MRPC, STSB, MNLI], ids=lambda t: t.name)
def test_vectorised_protocol_equals_per_combination_loop(task):
    rng = np.random.default_rng(1)
    n, s = 40, 9  # 9 seeds in 2 groups: 5 + 4, so groups weigh the same despite unequal counts
    labels = rng.normal(size=n) if task.is_regression else rng.integers(0, task.num_labels, n)
    logits = rng.normal(size=(s, n, task.num_labels)).astype(np.float32)
    e = evaluate(resultset(task, labels, {"baseline": list(logits)}), "baseline", groups=2, sizes=(2, 3, 4))
    for m in (2, 3, 4):
        ref = loop_reference(task, logits, labels, 2, m)
        got = {k: float(e.combos[m].weights @ e.scores[m][k]) for k in task.metrics}
        assert got == pytest.approx(ref, rel=1e-12)


def test_chunked_gather_equals_one_gather():
    rng = np.random.default_rng(2)
    outputs = member_outputs(MNLI, rng.normal(size=(8, 30, 3)).astype(np.float32))
    whole = ensemble_predictions(MNLI, outputs, groups=1, size=4)
    chunked = ensemble_predictions(MNLI, outputs, groups=1, size=4, budget=500)  # 1 or 2 combinations a chunk
    np.testing.assert_array_equal(whole.pred, chunked.pred)
    np.testing.assert_array_equal(whole.group, chunked.group)


def test_too_few_seeds_gives_a_message_and_empty_ensemble_columns():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 30)
    logits = {"baseline": list(rng.normal(size=(10, 30, 2))), "base-lt": list(rng.normal(size=(7, 30, 2)))}
    a = analyse(resultset(MRPC, labels, logits), AnalysisOptions(groups=2, sizes=(2, 3, 4, 5), resamples=50))
    lt = a.table1.set_index("method").loc["base-lt"]
    assert np.isnan(lt["accuracy_ensemble"]) and np.isnan(lt["accuracy_p_vs_baseline"])
    assert not np.isnan(lt["accuracy_single"])
    assert any(n.startswith("base-lt has 7 seed(s)") for n in a.notes)
    # the curves still have what 2 groups of 3-4 can form
    assert sorted(a.curves[a.curves.method == "base-lt"].members.unique()) == [1, 2, 3]
    assert protocol_problem("x", 10, 2, (2, 5)) is None


def test_logits_of_the_wrong_shape_are_refused():
    with pytest.raises(MteError, match="expected \\(3, 2\\)"):
        ResultSet.from_members(MRPC, np.zeros(3), [Member("baseline", 0, np.zeros((4, 2), np.float32))])
    with pytest.raises(MteError, match="twice"):
        ResultSet.from_members(MRPC, np.zeros(3), [Member("baseline", 0, np.zeros((3, 2), np.float32))] * 2)
