"""Is a method's ensemble better than BASELINE's? A t-test over combinations, as the paper, and a paired
bootstrap over dev examples, because combination scores share members and examples and so are not the
independent samples the t-test assumes.

Bootstrap: B resamples of the dev examples (multinomial counts W, (B, n), seeded) shared by both methods
(paired). For each resample, every ensemble is re-scored and the protocol's weighted mean taken; the
interval is the percentile interval of method − BASELINE. Re-scoring all combinations for every resample
is done from weighted sufficient statistics (W @ indicators: confusion counts, moments), a few matrix
products instead of B × C metric calls. Spearman re-uses the ranks of the full dev set (a weighted
Pearson of fixed ranks), an approximation that avoids re-ranking B × C arrays.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata, ttest_ind

from mte.analysis.ensembles import Combos
from mte.metrics import f1_from_counts, matthews_from_counts


def t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Student's t-test (equal variances) of samples a and b; nan if undefined."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical constant samples: nan, said as "—"
        return float(ttest_ind(a, b).pvalue)


def mark(vs_baseline: tuple[float, float], vs_base_lt: tuple[float, float] | None, alpha: float = 0.05) -> str:
    """The paper's marks from (difference, p-value) pairs: † better than BASELINE with p < alpha,
    ‡ better than both BASELINE and BASE-LT. A worse method gets no mark whatever its p-value."""

    def better(d: tuple[float, float]) -> bool:
        return bool(d[0] > 0 and d[1] < alpha)

    if not better(vs_baseline):
        return ""
    return "‡" if vs_base_lt is not None and better(vs_base_lt) else "†"


def bootstrap_weights(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(B, n) how often each dev example is drawn in each resample (each row sums to n)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson of each row of x (C, n) with y (n,) under each weight row of w (B, n) → (B, C)."""
    n = w.sum(1, keepdims=True)
    x = x - x.mean(1, keepdims=True)  # centring first keeps the moment formulas well conditioned
    y = y - y.mean()
    mx, my = (w @ x.T) / n, (w @ y)[:, None] / n
    cov = (w @ (x * y).T) / n - mx * my
    vx = (w @ (x * x).T) / n - mx * mx
    vy = (w @ (y * y))[:, None] / n - my * my
    denom = np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0))
    return np.where(denom > 0, cov / np.where(denom > 0, denom, 1), 0.0)


def resampled_scores(metric: str, pred: np.ndarray, labels: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`metric` of every row of pred (C, n) on every resample in w (B, n) → (B, C).

    With w all ones this is `mte.metrics`' value; with integer counts it equals the metric of the
    resampled arrays (Spearman: see the module docstring).
    """
    if metric == "pearson":
        return _weighted_pearson(pred.astype(np.float64), labels.astype(np.float64), w)
    if metric == "spearman":
        return _weighted_pearson(rankdata(pred, axis=-1), rankdata(labels), w)
    n = w.sum(1)[:, None]
    if metric == "accuracy":
        return (w.astype(np.float32) @ (pred == labels).T.astype(np.float32)) / n
    # True and false positives from the positive and the negative examples: one product's worth of work.
    # Counts and 0/1 indicators are exact in float32 (n < 2**24), which multiplies twice as fast.
    p, y = (pred == 1).astype(np.float32), labels == 1
    tp = (w[:, y].astype(np.float32) @ p[:, y].T).astype(np.float64)
    fp = (w[:, ~y].astype(np.float32) @ p[:, ~y].T).astype(np.float64)
    pos = w[:, y].sum(1)[:, None]
    if metric == "f1":
        return f1_from_counts(tp, tp + fp, pos)
    if metric == "matthews":
        return matthews_from_counts(tp, n - pos - fp, fp, pos - tp)
    raise ValueError(f"no bootstrap for metric {metric!r}")


def protocol_resamples(metric: str, combos: Combos, labels: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) the protocol's ensemble score (weighted mean over combinations) on each resample."""
    if metric == "accuracy":  # linear in the examples: average the combinations first, then one product
        return (w @ (combos.weights @ (combos.pred == labels))) / w.sum(1)
    return resampled_scores(metric, combos.pred, labels, w) @ combos.weights


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
