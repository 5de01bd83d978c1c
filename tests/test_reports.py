"""Figures a person reads on their own: titles name the subject, axes name the metric, buckets say what they mean."""

from __future__ import annotations

import datetime as dt
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.reports import (
    FigureSubject,
    bucket_labels,
    evaluation_figures,
    monitoring_figures,
    permutation_importance_figure,
)
from mlops.targets import BinaryTarget, BucketTarget

SUBJECT = FigureSubject("ltv_bucket", "DE", "candidate run 1a2b3c4d", "evaluated 2024-03-01")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _names_the_subject(title: str) -> bool:
    return all(part in title for part in ("ltv_bucket", "DE", "candidate run 1a2b3c4d", "2024-03-01"))


def test_bucket_labels_give_each_class_its_value_range_and_training_share():
    assert bucket_labels([10.0, 52.5], [0.5, 0.25, 0.15, 0.1]) == [
        "0: ≤ 0\n(50% of train)",
        "1: 0–10\n(25% of train)",
        "2: 10–52.5\n(15% of train)",
        "3: > 52.5\n(10% of train)",
    ]
    assert bucket_labels([7.0], None) == ["0: ≤ 0", "1: 0–7", "2: > 7"]


def test_the_confusion_matrix_says_what_each_bucket_means_and_whose_it_is():
    target = BucketTarget(buckets=2, edges=[20.0], class_shares=[0.6, 0.3, 0.1])
    y_true, prediction = np.array([0, 0, 1, 2, 1]), np.array([0, 1, 1, 2, 0])
    figures = evaluation_figures(target, y_true, prediction, subject=SUBJECT, label="future_revenue in 90 days")
    ax = figures["confusion_matrix.png"].axes[0]
    assert _names_the_subject(ax.get_title())
    assert ax.get_xlabel() == "predicted bucket of future_revenue in 90 days"
    assert ax.get_ylabel() == "true bucket of future_revenue in 90 days"
    expected = ["0: ≤ 0\n(60% of train)", "1: 0–20\n(30% of train)", "2: > 20\n(10% of train)"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == expected
    assert [tick.get_text() for tick in ax.get_yticklabels()] == expected


def test_binary_curves_name_the_subject_the_positive_class_and_their_axes():
    y_true = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    score = np.array([0.1, 0.8, 0.3, 0.6, 0.9, 0.2, 0.4, 0.5])
    figures = evaluation_figures(BinaryTarget(), y_true, score, score[::-1], subject=SUBJECT, label="repurchase")
    assert sorted(figures) == ["calibration_curve.png", "pr_curve.png", "roc_curve.png"]
    for figure in figures.values():
        ax = figure.axes[0]
        assert _names_the_subject(ax.get_title()) and "repurchase = 1" in ax.get_title()
        assert ax.get_xlabel() and ax.get_ylabel()


def test_permutation_importance_names_the_score_that_drops():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"recency": rng.normal(size=60), "noise": rng.normal(size=60)})
    y = (X["recency"] > 0).astype(int).to_numpy()
    model = LogisticRegression().fit(X, y)

    def accuracy(fitted, features, truth):
        return float(np.mean(fitted.predict(features) == truth))

    figure, table = permutation_importance_figure(
        model, X, y, accuracy, seed=1, metric_name="accuracy", subject=SUBJECT
    )
    ax = figure.axes[0]
    assert ax.get_xlabel().startswith("drop in accuracy when the feature is shuffled")
    assert ax.get_ylabel() == "feature" and _names_the_subject(ax.get_title())
    assert table["feature"].iloc[0] == "recency"


def _monitoring(dates: list[dt.date]) -> pd.DataFrame:
    """The monitor stage's table: per scoring date two features' PSI, the score's PSI, realised qwk."""
    rows = []
    for i, day in enumerate(dates):
        rows += [
            (day, "feature_psi", "recency", 0.05 + i / 10, 0.2, False, 100, "3"),
            (day, "feature_psi", "frequency", 0.01, 0.2, False, 100, "3"),
            (day, "prediction_psi", "score", 0.1 + i / 10, 0.2, i > 0, 100, "3"),
            (day, "performance", "qwk", 0.4 - i / 10, 0.25, False, 100, "3"),
        ]
    columns = ["scoring_date", "metric", "subject", "value", "threshold", "violated", "rows", "model_version"]
    return pd.DataFrame(rows, columns=columns)


def test_one_scoring_date_draws_drift_but_no_trend_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="mlops.reports"):
        figures = monitoring_figures(
            _monitoring([dt.date(2024, 3, 1)]), "scoring_date", model="ltv_bucket", country="DE"
        )
    assert list(figures) == ["drift_latest.png"]
    assert "performance_over_time.png not drawn: no measure has two scoring dates yet" in caplog.text
    ax = figures["drift_latest.png"].axes[0]
    assert ax.get_xlabel().startswith("PSI") and "threshold" in [line.get_label() for line in ax.get_lines()]
    assert all(part in ax.get_title() for part in ("ltv_bucket", "DE", "version 3", "2024-03-01"))


def test_two_scoring_dates_draw_each_measure_over_time_with_its_threshold():
    table = _monitoring([dt.date(2024, 3, 1), dt.date(2024, 3, 2)])
    figures = monitoring_figures(table, "scoring_date", model="ltv_bucket", country="DE")
    axes = figures["performance_over_time.png"].axes
    assert [ax.get_ylabel() for ax in axes] == ["realised qwk", "PSI of the model's score"]
    for ax, threshold in zip(axes, (0.25, 0.2)):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert list(lines["threshold"].get_ydata()) == [threshold, threshold]
    assert axes[-1].get_xlabel() == "scoring date"
    assert all(part in axes[0].get_title() for part in ("ltv_bucket", "DE", "version 3", "2024-03-01 to 2024-03-02"))
