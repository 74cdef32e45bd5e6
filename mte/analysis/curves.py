"""Gain versus members (Figure 3): each method's m-member ensemble score minus BASELINE's, m = 1..M.

The band is the spread of the method's m-member combination scores (the sample standard deviation, ddof = 1,
with the protocol's weights: each group weighs the same): how much one m-member ensemble drawn from the pool
varies. Its standard error over combinations is in the CSV too, but combinations share members, so it
understates the uncertainty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mte.analysis.ensembles import MethodEnsembles


def weighted_sd(values: np.ndarray, weights: np.ndarray) -> float:
    """Sample standard deviation under normalised weights (reliability weights: with equal weights, ddof = 1)."""
    mean = weights @ values
    denom = 1.0 - weights @ weights
    return float(np.sqrt(weights @ (values - mean) ** 2 / denom)) if denom > 0 else float("nan")


def gain_curves(ensembles: Mapping[str, MethodEnsembles], metrics: Sequence[str], sizes: Sequence[int],
                reference: str = "baseline") -> pd.DataFrame:
    """One row per (method, members, metric) the groups could form; gain is nan without the reference."""
    rows = []
    for method, ens in ensembles.items():
        for m in sizes:
            if m not in ens.combos:
                continue
            w = ens.combos[m].weights
            for metric in metrics:
                v = ens.scores[m][metric]
                mean = float(w @ v)
                std = weighted_sd(v, w)
                ref = ensembles.get(reference)
                ref_mean = float(ref.combos[m].weights @ ref.scores[m][metric]) \
                    if ref is not None and m in ref.combos else float("nan")
                rows.append({"method": method, "members": m, "metric": metric, "score": mean, "std": std,
                             "sem": std / np.sqrt(len(v)), "combinations": len(v), "gain": mean - ref_mean})
    columns = ["method", "members", "metric", "score", "std", "sem", "combinations", "gain"]
    return pd.DataFrame(rows, columns=columns)
