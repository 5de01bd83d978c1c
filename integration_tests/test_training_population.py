"""country.training_population=pooled on the bundled Germany + France sample: the DE model learns
from both countries' customers, and is judged, profiled and served on Germany's own."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

from clv.population import HOME_SHARE
from integration_tests.conftest import DE_PIPELINE_OVERRIDES, local_config
from mlops.cli import run_stages
from mlops.registry import alias_version, configure_mlflow, load_run_json, registered_model_name
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pooled(tmp_path_factory, spark):
    cfg = local_config(
        tmp_path_factory.mktemp("pooled"),
        "model=repurchase",
        *DE_PIPELINE_OVERRIDES,
        "country.training_population=pooled",
    )
    ctx = RunContext.from_config(cfg, spark=spark)
    results = {result.stage: result for result in run_stages(list(cfg.pipeline.stages), cfg, ctx)}
    return ctx, results


def home_pairs(transactions: pd.DataFrame, dates) -> set[tuple[str, object]]:
    """(customer, date) where at least half of the customer's purchase invoices by then were placed
    in Germany: computed here in pandas, independently of the feature function."""
    purchases = transactions[~transactions["is_return"]].drop_duplicates(["customer_id", "invoice"])
    pairs = set()
    for day in dates:
        seen = purchases[purchases["invoice_date"].dt.date <= day]
        share = (seen["country"] == "Germany").groupby(seen["customer_id"]).mean()
        pairs |= {(customer, day) for customer in share[share >= 0.5].index}
    return pairs


def test_extract_keeps_every_country_and_training_learns_from_them(pooled):
    ctx, results = pooled
    countries = {row["country"] for row in ctx.read("transactions").select("country").distinct().collect()}
    assert countries == {"Germany", "France"}
    assert HOME_SHARE in results["train"].details["features"]
    train, test = ctx.read("train"), ctx.read("test")
    assert train.where(F.col(HOME_SHARE) < 0.5).count() > 0  # France's customers are learnt from
    assert test.count() > 0 and test.where(F.col(HOME_SHARE) < 0.5).count() == 0  # and never tested on
    tested = {row["customer_id"] for row in test.select("customer_id").distinct().collect()}
    trained = {row["customer_id"] for row in train.select("customer_id").distinct().collect()}
    assert not tested & trained


def test_the_gate_profile_and_scores_concern_germanys_customers_only(pooled):
    ctx, results = pooled
    configure_mlflow(ctx.cfg)
    champion = alias_version(registered_model_name(ctx.cfg), "champion")
    assert champion is not None and champion.run_id == results["train"].run_id  # the pooled model passed the gate
    edges = load_run_json(results["train"].run_id, "config/training_profile.json")["features"][HOME_SHARE]["edges"]
    assert edges and min(edges) >= 0.5  # drift compares with Germany's customers, as scoring will see

    dates = results["batch_inference"].details["dates"]
    predicted = {
        (row["customer_id"], row["scoring_date"])
        for row in ctx.read("predictions").select("customer_id", "scoring_date").collect()
    }
    assert predicted == home_pairs(ctx.read("transactions").toPandas(), dates)
    assert results["monitor"].rows["monitoring"] > 0
