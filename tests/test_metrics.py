"""Metric functions against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.errors import ConfigError
from mlops.metrics import compute_metrics, lift_at

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
