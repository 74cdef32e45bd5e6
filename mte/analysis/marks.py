"""What a mark in Table 1 claims, and the p-values it rests on.

A mark is a one-sided claim: method A's ensemble (or diff) is better than the reference's, the seed-level
permutation test's one-sided p below α (`significance.better`), so a mark is false at rate α. † better than
BASELINE, ‡ better than BASELINE and BASE-LT. A diff (ensemble − single) is marked only where the ensemble is
marked too: a larger diff with an ensemble no better than the reference's comes from weaker single models, not
from ensembling (it gets § instead, and no †/‡).

A report makes many such claims (methods × references × ensemble/diff × metrics), so Holm's step-down
adjustment of the one-sided p-values over that family is given beside them; the marks use the unadjusted p
(each mark is one claim at α, as in the paper), the Holm-adjusted p says which claims survive the family.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mte.analysis.significance import Comparison, better

BASELINE, BASE_LT = "baseline", "base-lt"
NO_GAIN = "§"  # a larger diff than BASELINE's without a better ensemble


def holm(p: Iterable[float]) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); nan stays nan and is not part of the family."""
    p = np.asarray(list(p), dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.empty(0)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def adjust(comparisons: dict[tuple[str, str], Comparison], metrics: tuple[str, ...]) -> int:
    """Fill each comparison's `p_holm`/`p_holm_diff`: Holm over every one-sided p of the report (one task).
    Returns the family's size."""
    keys = [(pair, k, diff) for pair in comparisons for k in metrics for diff in (False, True)]
    raw = [(comparisons[pair].p_perm_diff if diff else comparisons[pair].p_perm)[k] for pair, k, diff in keys]
    for (pair, k, diff), q in zip(keys, holm(raw), strict=True):
        (comparisons[pair].p_holm_diff if diff else comparisons[pair].p_holm)[k] = float(q)
    return int(np.count_nonzero(np.isfinite(raw)))


def _over(comparisons: dict[tuple[str, str], Comparison], method: str, ref: str, metric: str, alpha: float,
          diff: bool) -> bool:
    c = comparisons.get((method, ref))
    if c is None:
        return False
    ensemble = better(c.gain[metric], c.p_perm[metric], alpha)
    return (ensemble and better(c.diff_gain[metric], c.p_perm_diff[metric], alpha)) if diff else ensemble


def mark(comparisons: dict[tuple[str, str], Comparison], method: str, metric: str, alpha: float,
         diff: bool) -> str:
    """'†', '‡', '§' (diff only: larger than BASELINE's, ensemble not better) or ''."""
    if not _over(comparisons, method, BASELINE, metric, alpha, diff):
        c = comparisons.get((method, BASELINE))
        if diff and c is not None and better(c.diff_gain[metric], c.p_perm_diff[metric], alpha):
            return NO_GAIN
        return ""
    return "‡" if _over(comparisons, method, BASE_LT, metric, alpha, diff) else "†"


def out_of_reach(comparisons: dict[tuple[str, str], Comparison], alpha: float) -> list[str]:
    """Why no mark can appear, whatever the data: the test's smallest p (1 / statistics counted) is ≥ α."""
    out = []
    exact = sorted({len(c.seeds) for c in comparisons.values() if c.exact and c.smallest_p >= alpha})
    if exact:
        out.append(f"with {' or '.join(map(str, exact))} seed pair(s) the permutation test cannot reach p < {alpha:g} "
                   f"(its smallest p-value is 1/2^pairs = {1 / 2 ** exact[-1]:.3g}): no difference can be marked; "
                   f"record more seeds")
    drawn = sorted({c.permutations for c in comparisons.values() if not c.exact and c.smallest_p >= alpha})
    if drawn:
        needed = int(np.ceil(1 / alpha))
        out.append(f"with {' or '.join(str(n - 1) for n in drawn)} random permutations the permutation test cannot "
                   f"reach p < {alpha:g} (its smallest p-value is 1/(permutations + 1) = {1 / drawn[0]:.3f}): no "
                   f"difference can be marked; use --permutations {needed} or more (1000 by default)")
    return out
