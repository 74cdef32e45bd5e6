"""Ensembles: the vectorised protocol against hand-worked cases and a per-combination loop; groups by seed id."""

from itertools import combinations

import numpy as np
import pytest

from mte.analysis import AnalysisOptions, Member, ResultSet, analyse
from mte.analysis.ensembles import (
    Combinations,
    combination_outputs,
    combination_scores,
    evaluate,
    member_outputs,
    seed_groups,
    table_score,
)
from mte.errors import MteError
from mte.metrics import predictions, task_metrics
from mte.tasks import get_task

MRPC, STSB, MNLI = get_task("mrpc"), get_task("sts-b"), get_task("mnli")


def resultset(task, labels, logits_by_method, seeds=None):
    return ResultSet.from_members(task, labels, [
        Member(m, seeds[i] if seeds else i, np.asarray(x, np.float32))
        for m, xs in logits_by_method.items() for i, x in enumerate(xs)])


def test_identical_members_ensemble_equals_single_and_diff_is_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    one = rng.normal(size=(50, 2))
    a = analyse(resultset(MRPC, labels, {"baseline": [one] * 6}), AnalysisOptions(sizes=(2, 3)))
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
    both = Combinations.within([np.array([0, 1])], 2, 2)
    mean = combination_outputs(member_outputs(MRPC, np.stack([m0, m1])), both, 0, 1)
    np.testing.assert_array_equal(predictions(MRPC, mean), [[0, 0]])  # mean p(1) = 0.35 and 0.25
    e = evaluate(resultset(MRPC, labels, {"baseline": [m0, m1]}), "baseline", sizes=(2,))
    assert e.table_score((2,))["accuracy"] == 0.5
    np.testing.assert_array_equal(e.single["accuracy"], [0.5, 1.0])
    # Averaging logits instead is an option: member 1's logit gap is the larger one on example 0.
    logits = evaluate(resultset(MRPC, labels, {"baseline": [np.array([[2.0, 0.0], [1.0, 0.0]]),
                                                            np.array([[0.0, 3.0], [1.0, 0.0]])]}), "baseline",
                      sizes=(2,), combine="logits")
    assert logits.table_score((2,))["accuracy"] == 1.0


def test_regression_ensemble_is_the_mean_score():
    members = [np.array([[0.0], [1.0], [3.0], [2.0]]), np.array([[1.0], [0.0], [2.0], [4.0]])]
    both = Combinations.within([np.array([0, 1])], 2, 2)
    mean = combination_outputs(member_outputs(STSB, np.stack(members)), both, 0, 1)
    np.testing.assert_allclose(mean[..., 0], [[0.5, 0.5, 2.5, 3.0]])


def test_groups_are_fixed_by_seed_id_and_a_missing_seed_leaves_a_smaller_group():
    assert [g.tolist() for g in seed_groups(list(range(20)))] == [list(range(10)), list(range(10, 20))]
    seeds = [s for s in range(20) if s != 3]  # seed 3 failed
    groups = seed_groups(seeds)
    assert [[seeds[i] for i in g] for g in groups] == [[0, 1, 2, 4, 5, 6, 7, 8, 9], list(range(10, 20))]
    assert [len(g) for g in seed_groups([0, 1, 2, 15])] == [3, 1]  # by id, not split by count


def test_members_are_put_in_seed_order():
    labels = np.array([0, 1])
    members = [Member("baseline", s, np.zeros((2, 2), np.float32)) for s in (5, 1, 3)]
    assert ResultSet.from_members(MRPC, labels, members).seeds("baseline") == [1, 3, 5]


def loop_reference(task, logits, labels, seeds, size):
    """The protocol written the slow, obvious way: groups by seed id, one metric call per combination."""
    per_group = []
    for g in sorted({s // 10 for s in seeds}):
        members = [i for i, s in enumerate(seeds) if s // 10 == g]
        scores = [task_metrics(task, np.mean([member_outputs(task, logits[i]) for i in c], axis=0), labels)
                  for c in combinations(members, size)]
        if scores:
            per_group.append({k: np.mean([s[k] for s in scores]) for k in task.metrics})
    return {k: np.mean([g[k] for g in per_group]) for k in task.metrics}


@pytest.mark.parametrize("task", [MRPC, STSB, MNLI], ids=lambda t: t.name)
def test_vectorised_protocol_equals_per_combination_loop(task):
    rng = np.random.default_rng(1)
    n, seeds = 40, [0, 1, 2, 3, 4, 10, 11, 12, 13]  # groups of 5 and 4, which weigh the same
    labels = rng.normal(size=n) if task.is_regression else rng.integers(0, task.num_labels, n)
    logits = rng.normal(size=(len(seeds), n, task.num_labels)).astype(np.float32)
    e = evaluate(resultset(task, labels, {"baseline": list(logits)}, seeds), "baseline", sizes=(2, 3, 4, 5))
    for m in (2, 3, 4, 5):
        ref = loop_reference(task, logits, labels, seeds, m)
        assert e.table_score((m,)) == pytest.approx(ref, rel=1e-12)


def test_chunked_scores_equal_one_pass_and_the_binary_shortcut_equals_argmax():
    rng = np.random.default_rng(2)
    for task, k in ((MNLI, 3), (MRPC, 2)):
        labels = rng.integers(0, k, 30)
        outputs = member_outputs(task, rng.normal(size=(8, 30, k)))
        comb = Combinations.within([np.arange(8)], 8, 4)
        whole = combination_scores(task, outputs, labels, comb)
        chunked = combination_scores(task, outputs, labels, comb, budget=50)  # 1 or 2 combinations a chunk
        for m in task.metrics:
            np.testing.assert_array_equal(whole[m], chunked[m])
        mean = combination_outputs(outputs, comb, 0, len(comb))
        by_argmax = {m: np.asarray(task_metrics(task, mean, labels)[m]) for m in task.metrics}
        for m in task.metrics:
            np.testing.assert_allclose(whole[m], by_argmax[m], rtol=1e-12)
        batch = np.stack([outputs, outputs[::-1]])  # leading axes are batch entries
        twice = combination_scores(task, batch, labels, comb)
        np.testing.assert_array_equal(twice[task.metrics[0]][0], whole[task.metrics[0]])
        assert table_score(twice, comb)[task.metrics[0]].shape == (2,)


def test_methods_are_compared_at_the_largest_size_all_can_form_and_a_one_seed_method_has_no_ensemble():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 30)
    logits = {"baseline": list(rng.normal(size=(20, 30, 2))), "base-lt": list(rng.normal(size=(4, 30, 2))),
              "bagging": list(rng.normal(size=(1, 30, 2)))}
    a = analyse(resultset(MRPC, labels, logits), AnalysisOptions(permutations=50))
    assert a.sizes == (4,) and not a.paper_sizes
    t = a.table1.set_index("method")
    assert np.isfinite(t.loc["base-lt", "accuracy_ensemble"]) and np.isfinite(t.loc["baseline", "accuracy_ensemble"])
    assert np.isnan(t.loc["bagging", "accuracy_ensemble"]) and not np.isnan(t.loc["bagging", "accuracy_single"])
    assert any(n.startswith("bagging has 1 seed(s)") for n in a.notes)
    assert any("4-member ensembles" in n for n in a.notes)
    assert any("fewer than 2 groups of 5 seeds for bagging, base-lt" in w for w in a.warnings)
    assert sorted(a.curves[a.curves.method == "base-lt"].members.unique()) == [1, 2, 3, 4]
    full = analyse(resultset(MRPC, labels, {"baseline": logits["baseline"]}), AnalysisOptions(permutations=50))
    assert full.sizes == (5,) and full.paper_sizes and not any("groups of 5" in w for w in full.warnings)


def test_fewer_seeds_than_five_use_the_largest_size_the_groups_allow_and_say_so():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 30)
    a = analyse(resultset(MRPC, labels, {"baseline": list(rng.normal(size=(3, 30, 2)))}))
    assert a.sizes == (3,) and not a.paper_sizes
    assert any("3-member ensembles" in n and "the paper" in n for n in a.notes)
    asked = analyse(resultset(MRPC, labels, {"baseline": list(rng.normal(size=(6, 30, 2)))}),
                    AnalysisOptions(sizes=(2, 3)))
    assert any("not the paper's protocol" in n for n in asked.notes)


def test_logits_of_the_wrong_shape_are_refused():
    with pytest.raises(MteError, match="expected \\(3, 2\\)"):
        ResultSet.from_members(MRPC, np.zeros(3), [Member("baseline", 0, np.zeros((4, 2), np.float32))])
    with pytest.raises(MteError, match="twice"):
        ResultSet.from_members(MRPC, np.zeros(3), [Member("baseline", 0, np.zeros((3, 2), np.float32))] * 2)
