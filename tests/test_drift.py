"""PSI and training profiles: hand values, zero for identical data, growth with shift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops.drift import bin_edges, drift, profile, proportions, psi


def test_psi_by_hand():
    expected, actual = [0.5, 0.5], [0.25, 0.75]
    assert psi(expected, actual) == pytest.approx((0.25 - 0.5) * math.log(0.5) + (0.75 - 0.5) * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_empty_bins_give_a_large_finite_psi():
    value = psi([1.0, 0.0], [0.0, 1.0])
    assert math.isfinite(value) and value > 5


def test_proportions_use_left_closed_bins_and_count_missing():
    assert proportions(np.array([1.0, 2.0, 2.0, 3.0, np.nan]), [2.0]) == [0.6, 0.2, 0.2]
    assert bin_edges(np.array([0, 0, 0, 0, 1.0]), bins=4) == [0.0]


def test_drift_is_zero_on_training_data_and_grows_with_shift():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"recency": rng.exponential(30, 5000), "spend": rng.normal(100, 20, 5000)})
    saved = profile(train)
    assert drift(saved, train) == {"recency": pytest.approx(0.0, abs=1e-12), "spend": pytest.approx(0.0, abs=1e-12)}
    shifts = [drift(saved, train.assign(spend=train["spend"] + shift))["spend"] for shift in (0, 5, 10, 20, 40)]
    assert shifts == sorted(shifts) and shifts[-1] > 1.0
    assert drift(saved, train.assign(spend=train["spend"] + 20))["recency"] == pytest.approx(0.0, abs=1e-12)
