"""Every stage for both models on the bundled DE sample: backfilled predictions and monitoring."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from integration_tests.conftest import local_config
from mlops.cli import run_stages
from mlops.registry import alias_version, configure_mlflow, registered_model_name
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration

BACKFILL = [dt.date(2011, month, 9) for month in range(7, 13)]
# horizons of 90 days observed by 2011-12-08 (the last full day): July, August, September
MATURED = BACKFILL[:3]


@pytest.fixture(scope="module", params=["repurchase", "ltv_bucket"])
def pipeline(request, de_pipelines):
    run = de_pipelines[request.param]  # every stage, backfilled from 2011-07-09 (integration_tests/conftest.py)
    return run["ctx"], run["results"]


def test_run_pipeline_runs_every_stage(pipeline):
    ctx, results = pipeline
    assert list(results) == ["extract", "features", "split", "train", "evaluate", "batch_inference", "monitor"]


def test_predictions_cover_the_scoring_population_with_the_champion(pipeline):
    ctx, results = pipeline
    predictions, features = ctx.read("predictions"), ctx.read("scoring_features")
    per_date = {row["scoring_date"]: row["count"] for row in predictions.groupBy("scoring_date").count().collect()}
    population = {row["scoring_date"]: row["count"] for row in features.groupBy("scoring_date").count().collect()}
    assert sorted(per_date) == BACKFILL and per_date == population
    configure_mlflow(ctx.cfg)  # MLflow's registry URI is process-wide: other modules on this worker move it
    champion = alias_version(registered_model_name(ctx.cfg), "champion")
    assert {r["model_version"] for r in predictions.select("model_version").distinct().collect()} == {
        str(champion.version)
    }
    assert predictions.where(F.abs(F.col("probability_total") - 1) > 1e-6).count() == 0
    expected = {
        "customer_id",
        "scoring_date",
        "prediction",
        "score",
        "probability_total",
        "model_name",
        "model_version",
        "run_id",
        "scored_at",
    }
    probability = {"probability"} if ctx.cfg.model.name == "repurchase" else {f"probability_{c}" for c in range(4)}
    assert set(predictions.columns) == expected | probability


def test_monitoring_has_drift_for_every_date_and_performance_once_horizons_pass(pipeline):
    ctx, results = pipeline
    monitoring = ctx.read("monitoring").toPandas()
    performance = monitoring[monitoring["subject"] == "performance"]
    assert sorted(performance["scoring_date"]) == MATURED
    assert set(performance["metric"]) == {ctx.cfg.model.monitoring.performance_metric}
    assert performance["value"].between(0.3, 1.0).all()
    assert sorted(monitoring.loc[monitoring["metric"] == "prediction_psi", "scoring_date"]) == BACKFILL
    assert (monitoring.loc[monitoring["metric"] == "feature_psi"].groupby("scoring_date").size() > 10).all()
    # the season's base rate is a model input, but one value per date: no drift is computed for it
    skipped = set(ctx.cfg.model.monitoring.skip_drift)
    assert "repurchase_rate_last_year_ahead" in set(results["train"].details["features"]) & skipped
    assert not skipped & set(monitoring.loc[monitoring["metric"] == "feature_psi", "subject"])
    assert isinstance(results["monitor"].details["retrain_required"], bool)
    # the decision, one row on the latest date: violated = retrain required; no job started locally
    (decision,) = monitoring[monitoring["metric"] == "retrain_required"].itertuples(index=False)
    assert decision.scoring_date == max(BACKFILL) and decision.subject == ""
    assert decision.violated == results["monitor"].details["retrain_required"]
    assert decision.threshold == ctx.cfg.monitoring.violations and decision.rows == ctx.cfg.monitoring.windows
    print(
        f"\n{ctx.cfg.model.name} realised:",
        performance[["scoring_date", "metric", "value", "rows"]].to_string(index=False),
    )


def test_rescoring_a_date_replaces_only_that_date(pipeline, spark):
    ctx, _ = pipeline
    before = ctx.read("predictions").toPandas()
    again = local_config(
        ctx.cfg.env.storage_root, f"model={ctx.cfg.model.name}", "country=DE", "inference.date=2011-12-09"
    )
    run_stages(["batch_inference"], again, RunContext.from_config(again, spark=spark))
    after = ctx.read("predictions").toPandas()
    last = dt.date(2011, 12, 9)
    untouched = [before[before["scoring_date"] != last], after[after["scoring_date"] != last]]
    assertDataFrameEqual(spark.createDataFrame(untouched[1]), spark.createDataFrame(untouched[0]))
    new, old = after[after["scoring_date"] == last], before[before["scoring_date"] == last]
    assert (new["scored_at"].iloc[0] > old["scored_at"].iloc[0]) and len(new) == len(old)
    same = ["customer_id", "scoring_date", "prediction", "score", "model_version"]
    assertDataFrameEqual(spark.createDataFrame(new[same]), spark.createDataFrame(old[same]))
