"""Diversity measures: hand-worked values, bounds, and equality with deslib.util.diversity."""

import sys

import numpy as np
import pytest
from deslib.util import diversity as deslib

from mte.analysis.diversity import MEASURES, diversity, pairwise

DESLIB = {"q_statistic": deslib.Q_statistic, "ratio_errors": deslib.ratio_errors,
          "negative_double_fault": deslib.negative_double_fault, "disagreement": deslib.disagreement_measure,
          "correlation": deslib.correlation_coefficient}


def pair_with(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of two members with the given counts of (first right?, second right?) examples."""
    right = [(1, 1)] * n11 + [(1, 0)] * n10 + [(0, 1)] * n01 + [(0, 0)] * n00
    labels = np.zeros(len(right), dtype=int)
    return np.array(right).T ^ 1, labels  # right → predicts 0 (the label), wrong → predicts 1


def test_hand_worked_pair():
    pred, labels = pair_with(4, 2, 1, 3)  # fractions .4 .2 .1 .3
    d = diversity(pred, labels)
    assert d["q_statistic"] == pytest.approx((0.12 - 0.02) / (0.12 + 0.02))
    assert d["ratio_errors"] == pytest.approx((0.1 + 0.2) / 0.3)
    assert d["negative_double_fault"] == pytest.approx(-0.3)
    assert d["disagreement"] == pytest.approx(0.3)
    assert d["correlation"] == pytest.approx(0.1 / np.sqrt(0.5 * 0.5 * 0.6 * 0.4))
    assert d["pairs"] == 1


def test_identical_members_are_at_the_bound():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 100)
    one = np.where(rng.random(100) < 0.8, labels, (labels + 1) % 3)
    d = diversity(np.stack([one] * 4), labels)
    error = np.mean(one != labels)
    assert d["q_statistic"] == 1 and d["correlation"] == pytest.approx(1)
    assert d["disagreement"] == 0 and d["ratio_errors"] == 0
    assert d["negative_double_fault"] == pytest.approx(-error)
    assert d["pairs"] == 6 and all(d[f"{m}_undefined"] == 0 for m in MEASURES)


def test_equals_deslib_on_every_pair():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    pred = np.where(rng.random((6, 200)) < 0.75, labels, rng.integers(0, 3, (6, 200)))
    ours = pairwise(pred == labels)
    i, j = np.triu_indices(6, 1)
    for name, fn in DESLIB.items():
        theirs = [fn(labels, pred[a], pred[b]) for a, b in zip(i, j, strict=True)]
        np.testing.assert_array_equal(ours[name], theirs, err_msg=name)  # same operations, same bits
    for name in MEASURES:  # the method's value is the mean over pairs
        assert diversity(pred, labels)[name] == pytest.approx(np.mean(ours[name]), rel=1e-15)


def test_undefined_pairs_are_nan_left_out_and_counted():
    labels = np.zeros(6, dtype=int)
    pred = np.array([[0, 0, 0, 1, 1, 0],  # no error in common with the second: ratio errors undefined
                     [1, 1, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 1]])  # shares example 5's error with neither
    assert deslib.ratio_errors(labels, pred[0], pred[1]) == sys.float_info.max  # what we must not print
    values = pairwise(pred == labels)
    assert np.isnan(values["ratio_errors"]).all()
    d = diversity(pred, labels)
    assert np.isnan(d["ratio_errors"]) and d["ratio_errors_undefined"] == 3

    always_right = np.zeros((3, 6), dtype=int)
    always_right[2, :2] = 1
    with pytest.raises(ZeroDivisionError):  # deslib's Q of two always-right members
        deslib.Q_statistic(labels, always_right[0], always_right[1])
    with np.errstate(invalid="ignore"):
        assert np.isnan(deslib.correlation_coefficient(labels, always_right[0], always_right[1]))
    d = diversity(always_right, labels)
    assert d["q_statistic_undefined"] == 3 and d["correlation_undefined"] == 3
    assert d["disagreement"] == pytest.approx(np.mean([0, 2 / 6, 2 / 6]))  # defined measures still averaged

    # members 0 and 2 share example 3's error, only 0 misses example 4: ratio (1 + 0) / 1; other pairs share none
    mixed = np.array([[0, 0, 0, 1, 1, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    d = diversity(mixed, labels)
    assert d["ratio_errors_undefined"] == 2
    assert d["ratio_errors"] == pytest.approx(1.0)


def test_one_member_has_no_pairs():
    d = diversity(np.zeros((1, 5), dtype=int), np.zeros(5, dtype=int))
    assert d["pairs"] == 0 and np.isnan(d["q_statistic"])
