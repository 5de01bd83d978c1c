"""Model metrics as pure functions of labels and predictions, selected by name from config.

Binary metrics take a score (the probability of class 1); multi-class metrics take the decoded
class. Bootstrap intervals resample whole customers when groups are given: a customer appears in
many snapshots, and resampling rows would pretend those rows are independent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from mlops.errors import ConfigError

Metric = Callable[[np.ndarray, np.ndarray], float]


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.roc_auc_score(y_true, y_score))


def pr_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.average_precision_score(y_true, y_score))


def brier(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(skm.brier_score_loss(y_true, y_score))


def lift_at(fraction: float) -> Metric:
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


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def quadratic_kappa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Ordinal agreement: predicting bucket 3 for a bucket-0 customer costs more than bucket 1."""
    return float(skm.cohen_kappa_score(y_true, y_pred, weights="quadratic"))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, y_pred))


METRICS: dict[str, Metric] = {
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "brier": brier,
    "lift_at_10": lift_at(0.10),
    "macro_f1": macro_f1,
    "qwk": quadratic_kappa,
    "accuracy": accuracy,
}
# for these a smaller value is better; the gate and champion comparison need to know
LOWER_IS_BETTER = frozenset({"brier"})


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}", where="model.metrics", fix=f"one of {sorted(METRICS)}") from None


def compute_metrics(names: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Metric name -> value; an unknown name fails loudly rather than being skipped."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}", where="model.metrics", fix=f"one of {sorted(METRICS)}")
    return {name: METRICS[name](y_true, y_pred) for name in names}


def _resampled(
    statistic: Callable[[np.ndarray], float],
    n_rows: int,
    groups: np.ndarray | None,
    n_resamples: int,
    seed: int,
) -> list[float]:
    """`statistic(rows)` over bootstrap resamples of rows, or of whole groups when given; the
    resamples where it is undefined (a class missing, say) are left out."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order, counts = np.arange(n_rows), np.ones(n_rows, dtype=int)
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        order, counts = np.argsort(inverse, kind="stable"), np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    values = []
    with warnings.catch_warnings():  # a resample may lack a class; such resamples are skipped below
        warnings.simplefilter("ignore")
        for _ in range(n_resamples):
            picked = rng.integers(0, len(counts), size=len(counts))
            # the rows of the picked groups, each group's rows in a block: starts[g] .. starts[g] + counts[g]
            lengths = counts[picked]
            block_start = np.repeat(starts[picked] - (np.cumsum(lengths) - lengths), lengths)
            try:
                value = statistic(order[block_start + np.arange(lengths.sum())])
            except ValueError:
                continue
            if np.isfinite(value):
                values.append(value)
    return values


def _percentiles(values: list[float], n_resamples: int, confidence: float) -> tuple[float, float]:
    """A percentile interval, or (nan, nan) when most resamples were undefined: a number would look
    trustworthy where it is not."""
    if not values or len(values) < n_resamples / 2:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    fn: Metric,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `fn` over resamples of rows, or of whole groups when given."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    values = _resampled(lambda rows: fn(y_true[rows], y_pred[rows]), len(y_true), groups, n_resamples, seed)
    return _percentiles(values, n_resamples, confidence)


@dataclass(frozen=True)
class Improvement:
    """How much better one prediction scores than another on the same rows, with its interval.

    Positive is better whatever the metric's direction (for brier: reference - candidate), so a
    rule reads the same for every metric.
    """

    metric: str
    estimate: float
    low: float
    high: float

    def end(self, which: str) -> float:
        return {"low": self.low, "estimate": self.estimate, "high": self.high}[which]

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_improvement(
    name: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> Improvement:
    """The candidate's improvement over the reference on the same resampled customers.

    Paired, because the question is about the difference: two separate intervals overlap long
    before the difference is noise, since both models find the same customers easy or hard, and
    a resample that is easy for one is easy for the other.
    """
    fn = metric(name)
    sign = -1.0 if name in LOWER_IS_BETTER else 1.0
    y_true, candidate, reference = np.asarray(y_true), np.asarray(candidate), np.asarray(reference)

    def improvement(rows: np.ndarray) -> float:
        return sign * (fn(y_true[rows], candidate[rows]) - fn(y_true[rows], reference[rows]))

    estimate = improvement(np.arange(len(y_true)))
    low, high = _percentiles(_resampled(improvement, len(y_true), groups, n_resamples, seed), n_resamples, confidence)
    return Improvement(name, float(estimate), low, high)


def metrics_with_ci(
    names: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """{name, name_ci_low, name_ci_high} for each metric (a `confidence` percentile interval);
    n_resamples=0 gives point estimates only."""
    values = compute_metrics(names, y_true, y_pred)
    if n_resamples <= 0:
        return values
    out = dict(values)
    for name in names:
        low, high = bootstrap_ci(
            METRICS[name], y_true, y_pred, groups=groups, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out
