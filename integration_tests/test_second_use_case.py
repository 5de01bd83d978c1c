"""A use case the platform has never seen runs through every stage without a line of lib/mlops changed.

`visits` (integration_tests/second_use_case) composes from its own config files, added to Hydra's
search path: other key, date and id column names than CLV (member / as_of / score_day / visited /
visit), its own cleaning, feature and label functions, one model, no population component and no
textbook baseline. If the platform still named a CLV column anywhere, a stage here would fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_tests.conftest import every_stage_run
from integration_tests.second_use_case.visits import write_visits
from tests.conftest import local_config

CONF = Path(__file__).with_name("second_use_case") / "conf"
STAGES = ["extract", "features", "split", "train", "evaluate", "batch_inference", "monitor"]
CLV_NAMES = {"customer_id", "snapshot_date", "scoring_date", "invoice", "invoice_date", "country"}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def visits_run(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("visits")
    source = write_visits(root / "visits.csv")
    cfg = local_config(
        root / "world",
        f"hydra.searchpath=[file://{CONF}]",
        "use_case=visits",
        "model=comes_back",
        f"use_case.source.path={source}",
    )
    with every_stage_run(cfg, spark) as run:
        yield run


def test_every_stage_runs_on_a_use_case_with_other_column_names(visits_run):
    ctx, results = visits_run
    assert list(results) == STAGES
    for key in ("transactions", "features", "labels", "train", "test", "scoring_features", "predictions", "monitoring"):
        table = ctx.tables.read(ctx.table_name(key))
        assert table.count() > 0, key
        assert not CLV_NAMES & set(table.columns), (key, table.columns)
    assert str(ctx.table_name("features")).endswith("visits_comes_back_features_de")


def test_the_use_cases_keys_and_dates_are_the_tables_keys(visits_run):
    ctx, results = visits_run
    features = ctx.tables.read(ctx.table_name("features"))
    assert features.columns[:2] == ["member", "as_of"]
    assert {"visit_count", "amount_total", "days_since_last_visit"} <= set(features.columns)
    predictions = ctx.tables.read(ctx.table_name("predictions")).toPandas()
    assert {"member", "score_day", "prediction", "probability", "model_version"} <= set(predictions.columns)
    assert not predictions.duplicated(["member", "score_day"]).any()
    # the default scoring date is the latest visit day, and every member seen before it is scored
    latest = ctx.tables.read(ctx.table_name("transactions")).selectExpr("max(to_date(visited))").first()[0]
    assert set(predictions["score_day"]) == {latest}
    assert len(predictions) == results["batch_inference"].details["population"]
    monitoring = ctx.tables.read(ctx.table_name("monitoring"))
    assert "score_day" in monitoring.columns


def test_the_gate_judged_the_model_without_a_baseline_and_registered_a_champion(visits_run):
    from mlflow import MlflowClient

    from mlops.registry import alias_version, registered_model_name

    ctx, results = visits_run
    metrics = results["train"].metrics
    assert metrics["test_roc_auc"] > 0.6, metrics  # recency and frequency do predict a return
    name = registered_model_name(ctx.cfg)
    assert name.endswith("visits_comes_back_de")
    champion = alias_version(name, "champion")
    assert champion is not None and champion.run_id == results["train"].run_id
    verdict = MlflowClient().get_model_version(name, champion.version).tags
    assert verdict["gate.verdict"] == "passed" and "gate.baseline" not in verdict
