"""Calibration in the train stage (model.calibration): the estimator on the earlier training
snapshots, the calibrator on the latest ones, and clear refusals of what cannot be calibrated."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.naive_bayes import GaussianNB

from mlops.errors import ConfigError, TrainingDataError
from mlops.stages.train import calibrate, calibration_rows

TABLE = "local.clv.clv_repurchase_train_de"
DATES = [dt.date(2011, month, 9) for month in (3, 4, 5, 6)]


class Spy(LogisticRegression):
    """A logistic regression that records which rows (by index) it was fitted on and scored."""

    def fit(self, X, y, sample_weight=None):
        self.fit_index_ = list(X.index)
        self.scored_index_: list[int] = []
        return super().fit(X, y, sample_weight)

    def decision_function(self, X):
        # what CalibratedClassifierCV calibrates, when an estimator has it
        self.scored_index_.extend(X.index)
        return super().decision_function(X)


def snapshots_of(rows_per_date: int, dates: list[dt.date], seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One feature x per row, and the rows' snapshot dates (as toPandas gives them: datetime.date)."""
    rng = np.random.default_rng(seed)
    snapshot_dates = np.array([date for date in dates for _ in range(rows_per_date)], dtype=object)
    return pd.DataFrame({"x": rng.normal(size=len(snapshot_dates))}), snapshot_dates


@pytest.mark.parametrize("snapshots", [1, 2])
def test_the_estimator_learns_from_the_earlier_snapshots_only_the_calibrator_from_the_latest(snapshots):
    X, dates = snapshots_of(200, DATES)
    latest = np.isin(dates, DATES[-snapshots:])
    # earlier snapshots: buyers have high x; the latest: inverted. Either side seeing the other's rows shows.
    y = np.where(latest, X["x"] < 0, X["x"] > 0).astype(int)
    spy = Spy()

    model = calibrate(spy, X, y, dates, "sigmoid", snapshots, where=TABLE)

    assert isinstance(model, CalibratedClassifierCV)
    assert model.calibrated_classifiers_[0].estimator.estimator is spy  # frozen, not refitted
    assert spy.fit_index_ == list(X.index[~latest])
    assert sorted(spy.scored_index_) == list(X.index[latest])  # the calibrator saw its rows' scores only
    assert spy.coef_[0, 0] > 0  # learned the earlier rule, untouched by the inverted latest labels
    # the sigmoid was fitted on the latest (inverted) rows: it turns the estimator's ranking round
    grid = pd.DataFrame({"x": [-2.0, 0.0, 2.0]})
    assert np.all(np.diff(spy.predict_proba(grid)[:, 1]) > 0)
    assert np.all(np.diff(model.predict_proba(grid)[:, 1]) < 0)


def test_isotonic_calibration_of_an_overconfident_estimator_lowers_brier_on_fresh_data():
    rng = np.random.default_rng(7)

    def draw(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        x = rng.normal(size=n)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
        # eight copies of one feature: naive Bayes counts its evidence eight times, far too sure
        return pd.DataFrame({f"x{i}": x + rng.normal(scale=0.05, size=n) for i in range(8)}), y

    dates = np.array([date for date in DATES for _ in range(500)], dtype=object)
    X, y = draw(len(dates))
    fresh_X, fresh_y = draw(20_000)

    uncalibrated = GaussianNB().fit(X, y)  # what model.calibration.method=null gives
    model = calibrate(GaussianNB(), X, y, dates, "isotonic", 1, where=TABLE)

    before = brier_score_loss(fresh_y, uncalibrated.predict_proba(fresh_X)[:, 1])
    after = brier_score_loss(fresh_y, model.predict_proba(fresh_X)[:, 1])
    assert after < before - 0.01, (before, after)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_a_multiclass_model_is_calibrated_over_all_its_classes(method):
    X, dates = snapshots_of(300, DATES, seed=3)
    noisy = X["x"] + np.random.default_rng(4).normal(scale=0.7, size=len(X))
    y = np.digitize(noisy, [-0.5, 0.5, 1.2])  # four ordered classes, as ltv_bucket's

    model = calibrate(LogisticRegression(), X, y, dates, method, 1, where=TABLE)

    assert list(model.classes_) == [0, 1, 2, 3]
    proba = model.predict_proba(X.head(50))
    assert proba.shape == (50, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_calibration_rows_are_those_of_the_latest_snapshot_dates():
    X, dates = snapshots_of(10, DATES)
    y = np.tile([0, 1], len(X) // 2)
    shuffled = np.random.default_rng(1).permutation(len(X))  # not in date order: the dates decide
    latest = calibration_rows(y[shuffled], dates[shuffled], 2, TABLE)
    assert latest.sum() == 20
    assert set(dates[shuffled][latest]) == set(DATES[-2:])


@pytest.mark.parametrize(("dates_held", "snapshots"), [(1, 1), (3, 3), (2, 5)])
def test_too_few_training_snapshots_are_refused_naming_how_many(dates_held, snapshots):
    X, dates = snapshots_of(20, DATES[:dates_held])
    y = np.tile([0, 1], len(X) // 2)
    estimator = LogisticRegression()
    with pytest.raises(TrainingDataError) as raised:
        calibrate(estimator, X, y, dates, "isotonic", snapshots, where=TABLE)
    error = raised.value
    assert f"the training rows have {dates_held} " in error.what
    assert error.where == TABLE
    assert "model.calibration.snapshots" in error.fix and "model.calibration.method=null" in error.fix
    assert "more history" in error.fix
    assert not hasattr(estimator, "coef_")  # refused before anything was fitted


@pytest.mark.parametrize(
    ("part", "labels", "says"),
    [
        ("estimator", lambda latest, x: np.where(latest, x > 0, 0), "the estimator's rows (the earlier snapshots)"),
        ("calibration", lambda latest, x: np.where(latest, 1, x > 0), "the calibration rows (snapshot(s) 2011-06-09)"),
    ],
)
def test_a_part_with_one_class_is_refused(part, labels, says):
    X, dates = snapshots_of(50, DATES)
    latest = dates == DATES[-1]
    y = labels(latest, X["x"].to_numpy()).astype(int)
    with pytest.raises(TrainingDataError) as raised:
        calibrate(LogisticRegression(), X, y, dates, "isotonic", 1, where=TABLE)
    rows = 50 if part == "calibration" else 150
    assert raised.value.what.startswith(f"{says}: {rows} rows with only label value(s) [")
    assert raised.value.where == TABLE


def test_a_calibration_part_missing_a_class_of_the_estimator_is_refused():
    X, dates = snapshots_of(100, DATES)
    y = np.digitize(X["x"], [-0.5, 0.5])
    y[(dates == DATES[-1]) & (y == 2)] = 1  # no class 2 in the latest snapshot
    with pytest.raises(TrainingDataError, match=r"hold classes \[0, 1, 2\] but .* hold \[0, 1\]"):
        calibrate(LogisticRegression(), X, y, dates, "isotonic", 1, where=TABLE)


def test_too_few_calibration_rows_are_refused():
    X, dates = snapshots_of(50, DATES[:3])
    X = pd.concat([X, pd.DataFrame({"x": [0.1, -0.2, 0.3, -0.4]})], ignore_index=True)
    dates = np.concatenate([dates, np.array([DATES[3]] * 4, dtype=object)])
    y = np.concatenate([(X["x"].to_numpy()[:150] > 0).astype(int), [0, 1, 0, 1]])
    with pytest.raises(TrainingDataError, match="4 rows, at most 2 of any class; too few to calibrate on"):
        calibrate(LogisticRegression(), X, y, dates, "isotonic", 1, where=TABLE)


def test_no_calibration_snapshots_is_a_config_error():
    X, dates = snapshots_of(20, DATES)
    with pytest.raises(ConfigError, match="model.calibration.snapshots=0"):
        calibrate(LogisticRegression(), X, np.tile([0, 1], len(X) // 2), dates, "isotonic", 0, where=TABLE)
