"""Pairwise diversity of a method's members (Table 2), from their oracle outputs (right/wrong per example).

The definitions are deslib.util.diversity's (Kuncheva 2004), computed for all pairs at once from
N11/N10/N01/N00 = fractions of examples both right / only the first right / only the second right /
both wrong. deslib gives one pair at a time and, for pairs where a measure is undefined, returns
sys.float_info.max (ratio errors, no common errors), nan (correlation, a member always right or always
wrong) or raises ZeroDivisionError (Q statistic, N11·N00 + N01·N10 = 0). Here an undefined pair is nan,
left out of the method's mean and counted, so the report can say how many pairs were left out.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("q_statistic", "ratio_errors", "negative_double_fault", "disagreement", "correlation")
UNDEFINED = {  # when a pair has no value (the other two measures are always defined)
    "q_statistic": "N11·N00 + N01·N10 = 0",
    "ratio_errors": "no common errors",
    "correlation": "a member always right or always wrong",
}


def oracle_fractions(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N00, N10, N01, N11 as (s, s) matrices (row = first member) from correct (s, n) bool."""
    right = correct.astype(np.float64)
    wrong = 1.0 - right
    n = correct.shape[1]
    return (wrong @ wrong.T) / n, (right @ wrong.T) / n, (wrong @ right.T) / n, (right @ right.T) / n


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, nan where den is 0 (an undefined pair)."""
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)


def pairwise(correct: np.ndarray) -> dict[str, np.ndarray]:
    """Each measure for every pair i < j (in `np.triu_indices` order), nan where undefined."""
    i, j = np.triu_indices(len(correct), k=1)
    n00, n10, n01, n11 = (x[i, j] for x in oracle_fractions(correct))
    # Same operation order as deslib, so the values agree to the last bit.
    rho_den = np.sqrt((n11 + n01) * (n10 + n00) * (n11 + n10) * (n01 + n00))
    return {
        "q_statistic": _ratio((n11 * n00) - (n01 * n10), (n11 * n00) + (n01 * n10)),
        "ratio_errors": _ratio(n01 + n10, n00),
        "negative_double_fault": -n00,
        "disagreement": n10 + n01,
        "correlation": _ratio((n11 * n00) - (n10 * n01), rho_den),
    }


def diversity(pred: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """Mean of each measure over the defined pairs of members, plus `<measure>_undefined` pair counts.

    pred: (s, n) class ids of s members. Means are nan with fewer than two members.
    """
    values = pairwise(np.asarray(pred) == np.asarray(labels))
    out: dict[str, float | int] = {"pairs": len(values["disagreement"])}
    for name, v in values.items():
        defined = ~np.isnan(v)
        out[name] = float(v[defined].mean()) if defined.any() else float("nan")
        out[f"{name}_undefined"] = int(np.count_nonzero(~defined))
    return out
