"""Targets: bucket edges from training rows, decoding, and the round trip through target.json."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.errors import ConfigError
from mlops.targets import BinaryTarget, BucketTarget, rank_into_shares, target_from_dict, target_to_dict


def test_buckets_cut_buyers_at_training_quantiles():
    y = np.array([0.0, -5.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    target = BucketTarget(buckets=3).fit(y)
    assert target.edges == pytest.approx(
        [np.quantile([10, 20, 30, 40, 50, 60], 1 / 3), np.quantile([10, 20, 30, 40, 50, 60], 2 / 3)]
    )
    # no purchase and net returns are class 0; a value on an edge belongs to the lower bucket
    assert target.transform(np.array([0.0, -1.0, 0.01, target.edges[0], 1e6])).tolist() == [0, 0, 1, 1, 3]
    assert target.class_shares == pytest.approx([3 / 9, 2 / 9, 2 / 9, 2 / 9])


def test_fixed_edges_are_kept_and_validated():
    assert BucketTarget(buckets=3, edges=[100, 500]).fit(np.array([1.0, 2.0])).edges == [100.0, 500.0]
    with pytest.raises(ConfigError, match="increasing"):
        BucketTarget(buckets=3, edges=[500, 100])
    with pytest.raises(ConfigError, match="decoding"):
        BucketTarget(decoding="median")
    with pytest.raises(ConfigError, match="positive values"):
        BucketTarget(buckets=3).fit(np.array([0.0, 0.0, 5.0]))


def test_rank_into_shares_keeps_the_class_mix():
    values = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0, 6.0, 7.0, 8.0, 9.0])
    decoded = rank_into_shares(values, np.array([0, 1, 2]), np.array([0.5, 0.3, 0.2]))
    assert np.bincount(decoded).tolist() == [5, 3, 2]
    assert decoded[np.argmin(values)] == 0 and decoded[np.argmax(values)] == 2
    assert (np.diff(decoded[np.argsort(values)]) >= 0).all()  # monotone in the score


def test_decodings():
    proba = np.array([[0.6, 0.1, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.2, 0.2, 0.2, 0.4]])
    classes = np.arange(4)
    argmax = BucketTarget(buckets=3, edges=[1, 2], decoding="argmax", class_shares=[0.5, 0.25, 0.0, 0.25])
    assert argmax.predict(proba, classes).tolist() == [0, 3, 0, 3]
    ranked = BucketTarget(
        buckets=3, edges=[1, 2], decoding="ranked_expected_class", class_shares=[0.5, 0.25, 0.0, 0.25]
    )
    # expected classes 0.9, 2.0, 1.0, 1.8 -> ranks 0, 3, 1, 2 -> shares 50/25/0/25
    assert ranked.predict(proba, classes).tolist() == [0, 3, 0, 1]


def test_binary_target_reads_the_positive_column():
    proba = np.array([[0.7, 0.3], [0.1, 0.9]])
    assert BinaryTarget().predict(proba, np.array([0, 1])).tolist() == [0.3, 0.9]
    assert BinaryTarget().predict(proba[:, ::-1], np.array([1, 0])).tolist() == [0.3, 0.9]


def test_target_json_round_trip_and_refuses_foreign_classes():
    fitted = BucketTarget(buckets=2, decoding="ranked_expected_class").fit(np.array([0, 5.0, 10, 20]))
    rebuilt = target_from_dict(target_to_dict(fitted))
    assert rebuilt.state() == fitted.state()
    assert isinstance(target_from_dict(target_to_dict(BinaryTarget())), BinaryTarget)
    with pytest.raises(ConfigError):
        target_from_dict({"_target_": "os.system", "command": "true"})
