"""Model metrics as pure functions of labels and scores, selected by name from config."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.roc_auc_score(y_true, y_score))


def pr_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.average_precision_score(y_true, y_score))


def brier(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.brier_score_loss(y_true, y_score))


def lift_at(fraction: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """Positive rate among the top `fraction` by score over the base rate: what targeting buys."""

    def lift(y_true: np.ndarray, y_score: np.ndarray) -> float:
        y_true = np.asarray(y_true, dtype=float)
        base_rate = y_true.mean()
        if base_rate == 0:
            return float("nan")
        k = max(1, int(np.ceil(fraction * len(y_true))))
        # stable sort on the negated score keeps ties in input order: the figure is reproducible
        top = np.argsort(-np.asarray(y_score, dtype=float), kind="stable")[:k]
        return float(y_true[top].mean() / base_rate)

    lift.__name__ = f"lift_at_{round(fraction * 100)}"
    return lift


BINARY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "brier": brier,
    "lift_at_10": lift_at(0.10),
}


def compute_metrics(names: Sequence[str], y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """Metric name -> value; an unknown name fails loudly rather than being skipped."""
    unknown = [name for name in names if name not in BINARY_METRICS]
    if unknown:
        from mlops.errors import ConfigError

        raise ConfigError(f"unknown metric(s) {unknown}", where="model.metrics", fix=f"one of {sorted(BINARY_METRICS)}")
    return {name: BINARY_METRICS[name](y_true, y_score) for name in names}
