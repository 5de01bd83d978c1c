"""Metric functions against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.errors import ConfigError
from mlops.metrics import bootstrap_ci, compute_metrics, lift_at, metrics_with_ci, roc_auc

Y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_binary_metrics_by_hand():
    m = compute_metrics(["roc_auc", "pr_auc", "brier", "lift_at_10"], Y, S)
    # positives at ranks 1, 3, 10: 7+6+0 of 3*7 positive/negative pairs are ordered right
    assert m["roc_auc"] == pytest.approx(13 / 21)
    # precision at each positive: 1/1, 2/3, 3/10
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 10) / 3)
    assert m["brier"] == pytest.approx(np.mean((S - Y) ** 2))
    # top 10% = the first customer, a buyer; base rate 0.3
    assert m["lift_at_10"] == pytest.approx(1 / 0.3)


def test_lift_rounds_the_top_share_up_and_handles_no_positives():
    assert lift_at(0.25)(Y, S) == pytest.approx((2 / 3) / 0.3)  # top 3 of 10
    assert math.isnan(lift_at(0.1)(np.zeros(5), np.arange(5.0)))


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_metrics(["roc_auc", "accuracy_typo"], Y, S)


def test_multiclass_metrics_by_hand():
    y = np.array([0, 0, 1, 2, 3, 3])
    p = np.array([0, 1, 1, 2, 3, 2])
    m = compute_metrics(["accuracy", "macro_f1", "qwk"], y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: 0 -> 2/3, 1 -> 2/3, 2 -> 2/3, 3 -> 2/3
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # weights (i-j)^2: observed disagreement 1 + 1 = 2; expected from the marginals
    # (true 2,1,1,2; predicted 1,2,2,1) sum_ij (i-j)^2 r_i c_j / n = 90 / 6 = 15
    assert m["qwk"] == pytest.approx(1 - 2 / 15)


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n)
        return y, y * 0.6 + rng.random(n)

    y_small, s_small = sample(100)
    y_large, s_large = sample(5000)
    point = roc_auc(y_small, s_small)
    low, high = bootstrap_ci(roc_auc, y_small, s_small, n_resamples=300, seed=1)
    assert low <= point <= high
    low_l, high_l = bootstrap_ci(roc_auc, y_large, s_large, n_resamples=300, seed=1)
    assert (high_l - low_l) < 0.4 * (high - low)
    assert bootstrap_ci(roc_auc, y_small, s_small, n_resamples=300, seed=1) == (low, high)  # reproducible


def test_bootstrap_by_group_is_wider_when_rows_of_a_group_agree():
    # 40 customers x 10 identical snapshots: rows are not independent evidence
    rng = np.random.default_rng(3)
    y_c, s_c = rng.integers(0, 2, 40), rng.random(40)
    y, s, groups = np.repeat(y_c, 10), np.repeat(s_c, 10), np.repeat(np.arange(40), 10)
    rows = bootstrap_ci(roc_auc, y, s, n_resamples=300, seed=2)
    customers = bootstrap_ci(roc_auc, y, s, groups=groups, n_resamples=300, seed=2)
    assert (customers[1] - customers[0]) > 2 * (rows[1] - rows[0])


def test_metrics_with_ci_adds_bounds_and_handles_one_class_resamples():
    out = metrics_with_ci(["roc_auc", "brier"], np.array([0, 1] * 10), np.array([0.2, 0.8] * 10), n_resamples=50)
    assert out["roc_auc"] == 1.0 and out["roc_auc_ci_low"] == out["roc_auc_ci_high"] == 1.0
    assert out["brier_ci_low"] == pytest.approx(0.04) == out["brier"]
    assert set(out) == {"roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "brier", "brier_ci_low", "brier_ci_high"}
    assert metrics_with_ci(["accuracy"], np.array([0, 1]), np.array([0, 1]), n_resamples=0) == {"accuracy": 1.0}
    # a one-class sample has no AUC in any resample: no interval rather than a made-up one
    assert all(math.isnan(bound) for bound in bootstrap_ci(roc_auc, np.zeros(6), np.arange(6.0), n_resamples=50))


def test_metrics_with_ci_uses_the_confidence_it_is_given():
    """evaluation.confidence reaches the intervals, not only the model card's label."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    score = y * 0.5 + rng.random(300)
    wide = metrics_with_ci(["roc_auc"], y, score, n_resamples=200, confidence=0.95, seed=5)
    narrow = metrics_with_ci(["roc_auc"], y, score, n_resamples=200, confidence=0.5, seed=5)
    assert wide["roc_auc_ci_low"] < narrow["roc_auc_ci_low"] <= narrow["roc_auc"] <= narrow["roc_auc_ci_high"]
    assert narrow["roc_auc_ci_high"] < wide["roc_auc_ci_high"]
