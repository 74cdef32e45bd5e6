"""GLUE metrics, vectorised over leading axes: scoring 1 model or 10,000 ensembles is one call.

Every function takes predictions of shape (..., n) and labels of shape (n,) and returns shape (...).
Checked against scikit-learn and scipy in the tests.
"""

from __future__ import annotations

import numpy as np

from mte.tasks import TaskSpec


def accuracy(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (pred == labels).mean(-1)


def f1(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary F1 of the positive class (1); 0 where there are no positive predictions or labels."""
    p, y = pred == 1, labels == 1
    return f1_from_counts((p & y).sum(-1), p.sum(-1), y.sum(-1))


def f1_from_counts(tp: np.ndarray, pred_pos: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """F1 from true positives, predicted positives and actual positives."""
    denom = np.asarray(pred_pos + pos, dtype=float)
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def matthews(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary Matthews correlation; 0 where a row or column of the confusion matrix is empty (as sklearn)."""
    p, y = pred == 1, labels == 1
    tp = (p & y).sum(-1).astype(float)
    tn = (~p & ~y).sum(-1).astype(float)
    fp = (p & ~y).sum(-1).astype(float)
    fn = (~p & y).sum(-1).astype(float)
    return matthews_from_counts(tp, tn, fp, fn)


def matthews_from_counts(tp: np.ndarray, tn: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Matthews correlation from confusion counts (float)."""
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1), 0.0)


def binary_from_counts(tp: np.ndarray, pred_pos: np.ndarray, pos: int, n: int) -> dict[str, np.ndarray]:
    """Accuracy, F1 and Matthews of binary predictions from their true and predicted positive counts."""
    tp, pred_pos = np.asarray(tp, dtype=float), np.asarray(pred_pos, dtype=float)
    fp, fn = pred_pos - tp, pos - tp
    tn = n - pos - fp
    return {"accuracy": (tp + tn) / n, "f1": f1_from_counts(tp, pred_pos, pos),
            "matthews": matthews_from_counts(tp, tn, fp, fn)}


def pearson(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    s = scores - scores.mean(-1, keepdims=True)
    y = labels - labels.mean()
    denom = np.sqrt((s * s).sum(-1) * (y * y).sum())
    return np.where(denom > 0, (s * y).sum(-1) / np.where(denom > 0, denom, 1), 0.0)


def spearman(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata  # imported here: SciPy's stats take a second to import

    return pearson(rankdata(scores, axis=-1), rankdata(labels))


CLASSIFICATION = {"accuracy": accuracy, "f1": f1, "matthews": matthews}
REGRESSION = {"pearson": pearson, "spearman": spearman}


def predictions(task: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """Class ids (argmax of logits or probabilities) or regression scores from outputs (..., n, k)."""
    outputs = np.asarray(outputs)
    return outputs[..., 0] if task.is_regression else outputs.argmax(-1)


def score(task: TaskSpec, pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of the task (in `task.metrics` order) for predictions (..., n) → arrays of shape (...)."""
    table = REGRESSION if task.is_regression else CLASSIFICATION
    return {name: np.asarray(table[name](pred, labels), dtype=float) for name in task.metrics}


def task_metrics(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray | float]:
    """`score` of outputs (..., n, k); a plain float where there is one value."""
    return {k: float(v) if v.ndim == 0 else v for k, v in score(task, predictions(task, outputs), labels).items()}
