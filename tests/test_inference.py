"""Batch scoring on Spark gives what the model gives when called directly, for both targets."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from mlops.models import ScoredModel
from mlops.stages.batch_inference import predictions_frame
from mlops.targets import BinaryTarget, BucketTarget, rank_into_shares

FEATURES = ["recency", "spend"]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "scoring_date": [dt.date(2011, 12, 9)] * (n // 2) + [dt.date(2011, 11, 9)] * (n - n // 2),
            "recency": rng.exponential(30, n),
            "spend": rng.gamma(2, 50, n),
        }
    )


def fitted(target, y: np.ndarray, data: pd.DataFrame) -> ScoredModel:
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(data[FEATURES], y)
    return ScoredModel(run_id="run-1", model=estimator, target=target, features=FEATURES)


def direct(model: ScoredModel, data: pd.DataFrame) -> np.ndarray:
    return model.model.predict_proba(data[FEATURES].astype("float64"))


def test_binary_scoring_matches_the_model(spark):
    data = frame(400, 0)
    model = fitted(BinaryTarget(), (data["recency"] < 25).astype(int).to_numpy(), data)
    scored = predictions_frame(
        spark.createDataFrame(data),
        model,
        keys=["customer_id", "scoring_date"],
        name="m",
        version="3",
        scored_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        threshold=0.5,
    )
    out = scored.toPandas().sort_values("customer_id").reset_index(drop=True)
    proba = direct(model, data)[:, 1]
    np.testing.assert_allclose(out["probability"], proba, rtol=1e-12)
    assert (out["prediction"] == (proba >= 0.5).astype(int)).all()
    np.testing.assert_allclose(out["probability_total"], 1.0, atol=1e-9)
    assert set(out["model_version"]) == {"3"} and set(out["run_id"]) == {"run-1"}


@pytest.mark.parametrize("decoding", ["ranked_expected_class", "argmax"])
def test_bucket_scoring_matches_the_model_and_its_decoding(spark, decoding):
    data = frame(600, 1)
    value = np.where(data["recency"] < 40, data["spend"], 0.0)
    target = BucketTarget(buckets=3, decoding=decoding).fit(value)
    model = fitted(target, target.transform(value), data)
    scored = predictions_frame(
        spark.createDataFrame(data),
        model,
        keys=["customer_id", "scoring_date"],
        name="m",
        version="1",
        scored_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        threshold=None,
    )
    out = scored.toPandas().sort_values(["scoring_date", "customer_id"]).reset_index(drop=True)
    ordered = data.sort_values(["scoring_date", "customer_id"]).reset_index(drop=True)
    proba = direct(model, ordered)
    np.testing.assert_allclose(out[[f"probability_{c}" for c in range(4)]].to_numpy(), proba, rtol=1e-12)
    for day, rows in ordered.groupby("scoring_date"):
        index = rows.index.to_numpy()
        if decoding == "argmax":
            expected = np.argmax(proba[index], axis=1)
        else:  # ranked within each scoring date, as the numpy decoder does on that date's rows
            expected = rank_into_shares(proba[index] @ np.arange(4.0), np.arange(4), np.array(target.class_shares))
        assert (out.loc[index, "prediction"].to_numpy() == expected).all(), day


@pytest.mark.parametrize("run_mode", ["disabled", "dry_run"])
def test_scoring_never_runs_an_evaluate_that_would_not_check_the_model_it_serves(ctx, run_mode):
    """inference.evaluate_if_no_champion runs the gate first; with the gate off (disabled sets
    champion unchecked) or only rehearsed (dry_run sets none) it is refused before any stage runs."""
    from omegaconf import open_dict

    from mlops.errors import ConfigError
    from mlops.registry import alias_version, registered_model_name
    from mlops.stages.batch_inference import champion_model

    with open_dict(ctx.cfg):
        ctx.cfg.inference.evaluate_if_no_champion = True
        ctx.cfg.evaluation.run_mode = run_mode
    with pytest.raises(ConfigError, match=f"evaluation.run_mode={run_mode}") as raised:
        champion_model(ctx)
    assert (
        raised.value.where == "inference.evaluate_if_no_champion" and "evaluation.run_mode=enabled" in raised.value.fix
    )
    assert ctx.results == [] and alias_version(registered_model_name(ctx.cfg), "champion") is None
    assert not ctx.tables.exists(ctx.table_name("transactions"))
