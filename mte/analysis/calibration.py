"""Calibration: how far a model's confidence can be trusted, beside how often it is right (classification only).

Per method, for single models (mean ± sample sd over seeds) and for Table 1's ensembles (the protocol's mean over
the same combinations as Table 1: every 5-member combination within a seed group, each group weighing the same):

- NLL: mean −log p(true class), probabilities clipped at 1e-15 (a confident mistake costs at most 34.5);
- Brier: mean over examples of Σ_k (p_k − 1[k = true])², 0 (perfect) to 2;
- ECE: 15 equal-width bins of the top-class probability (i/15, (i+1)/15]; Σ_bins (examples in bin / n) ×
  |accuracy − mean confidence| in the bin (Guo et al., 2017).

An ensemble's probabilities are its members' mean probabilities (or the softmax of their mean logits when the
report combines logits), as Table 1 scores it. The reliability diagram pools a method's members (single) and its
ensembles (weighted as in Table 1) into the same bins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mte.analysis.ensembles import MethodEnsembles, combination_outputs

BINS = 15
CLIP = 1e-15
MEASURES = ("nll", "ece", "brier")
_STEP = 1 << 22  # float64 values of ensemble probabilities held at once


def bin_index(confidence: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Bin of each confidence: (i/bins, (i+1)/bins] → i (a confidence of 0 goes to bin 0)."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def bin_stats(prob: np.ndarray, labels: np.ndarray, bins: int = BINS) -> np.ndarray:
    """(..., bins, 3): per bin the number of examples, the sum of confidences and the number right."""
    *lead, n, _ = prob.shape
    conf = prob.max(-1).reshape(-1, n)
    right = (prob.argmax(-1) == labels).reshape(-1, n)
    rows = len(conf)
    idx = (np.arange(rows)[:, None] * bins + bin_index(conf, bins)).ravel()
    out = np.stack([np.bincount(idx, weights=w.ravel(), minlength=rows * bins)
                    for w in (np.ones_like(conf), conf, right.astype(np.float64))], -1)
    return out.reshape(*lead, bins, 3)


def ece_from_bins(stats: np.ndarray) -> np.ndarray:
    """Expected calibration error from `bin_stats` (..., bins, 3) → (...)."""
    count, conf, right = stats[..., 0], stats[..., 1], stats[..., 2]
    return np.abs(right - conf).sum(-1) / count.sum(-1)


def measures(prob: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """NLL, ECE and Brier of class probabilities (..., n, k) against labels (n,) → each (...)."""
    n, k = prob.shape[-2:]
    true = prob[..., np.arange(n), labels]
    onehot = np.eye(k)[labels]
    return {"nll": -np.log(np.clip(true, CLIP, 1.0)).mean(-1),
            "ece": ece_from_bins(bin_stats(prob, labels)),
            "brier": ((prob - onehot) ** 2).sum(-1).mean(-1)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def method_calibration(logits: np.ndarray, ens: MethodEnsembles, sizes: Sequence[int], labels: np.ndarray,
                       combine: str) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """One method: its row of the calibration table and its reliability bins (single, ensemble), each (bins, 3)
    with counts as shares of the examples (so seeds and combinations weigh as in Table 1)."""
    single_prob = softmax(logits)
    single = measures(single_prob, labels)
    row: dict[str, float] = {}
    for name in MEASURES:
        row[f"{name}_single"] = float(single[name].mean())
        row[f"{name}_single_std"] = float(single[name].std(ddof=1)) if len(single[name]) > 1 else np.nan
    single_bins = bin_stats(single_prob, labels).mean(0) / len(labels)
    table = ens.table(sizes)
    if table is None:
        return row | {f"{name}_ensemble": np.nan for name in MEASURES}, single_bins, np.full_like(single_bins, np.nan)
    comb = table[0]
    weights = comb.weights
    n, k = ens.outputs.shape[1:]
    step = max(1, _STEP // (n * k))
    totals = dict.fromkeys(MEASURES, 0.0)
    ensemble_bins = np.zeros_like(single_bins)
    for start in range(0, len(comb), step):
        mean = combination_outputs(ens.outputs, comb, start, start + step)
        prob = softmax(mean) if combine == "logits" else mean
        w = weights[start:start + step]
        for name, value in measures(prob, labels).items():
            totals[name] += float(w @ value)
        ensemble_bins += np.tensordot(w, bin_stats(prob, labels), 1) / n
    return row | {f"{name}_ensemble": totals[name] for name in MEASURES}, single_bins, ensemble_bins


def calibration_tables(logits: Mapping[str, np.ndarray], ens: Mapping[str, MethodEnsembles], sizes: Sequence[int],
                       labels: np.ndarray, combine: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calibration: one row per method; reliability: one row per method, kind (single/ensemble) and bin, with
    the share of examples, mean confidence and accuracy in the bin)."""
    rows, bins = [], []
    edges = np.linspace(0, 1, BINS + 1)
    for method, e in ens.items():
        row, single, ensemble = method_calibration(logits[method], e, sizes, labels, combine)
        rows.append({"method": method} | row)
        for kind, stats in (("single", single), ("ensemble", ensemble)):
            for i, (share, conf, right) in enumerate(stats):
                bins.append({"method": method, "kind": kind, "bin": i, "low": edges[i], "high": edges[i + 1],
                             "share": share, "confidence": conf / share if share > 0 else np.nan,
                             "accuracy": right / share if share > 0 else np.nan})
    return pd.DataFrame(rows), pd.DataFrame(bins)
