"""A source in the minimal shape runs through every stage by config alone.

Columns `cust`, `day` (yyyyMMdd), `qty` and `amount` (a line total): no invoice, product,
description or country, and under a year of history, so the seasonal features are null or constant
in training. Out-of-time split (use_case.split.kind=time), the case that once failed inside
scikit-learn; the gate in evaluation.run_mode=disabled, since what is checked is that the pipeline
runs and says what it dropped, not the quality of a model on 300 generated customers.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from integration_tests.conftest import every_stage_run
from tests.conftest import local_config

STAGES = ["extract", "features", "split", "train", "evaluate", "batch_inference", "monitor"]
FIRST_DAY, DAYS = dt.date(2023, 9, 1), 300

pytestmark = pytest.mark.integration


def write_minimal_source(path: Path, customers: int = 300, seed: int = 11) -> Path:
    """Customers who buy at rates of their own and may stop for good (so recency predicts a return),
    sometimes twice a day (one invoice per customer-day), now and then returning an item."""
    rng = np.random.default_rng(seed)
    rows = []
    for customer in range(customers):
        rate = rng.gamma(2.0, 1 / 30)  # purchase days per day
        start = int(rng.integers(0, 150))
        stop = int(rng.integers(start + 20, DAYS + 150))
        day = start
        while (day := day + int(rng.exponential(1 / rate)) + 1) < min(stop, DAYS):
            stamp = (FIRST_DAY + dt.timedelta(days=day)).strftime("%Y%m%d")
            for _ in range(1 + int(rng.random() < 0.2)):
                quantity, unit = int(rng.integers(1, 8)), rng.gamma(3.0, 2.0)
                rows.append((str(10_000 + customer), stamp, str(quantity), f"{quantity * unit:.2f}"))
                if rng.random() < 0.03:
                    rows.append((str(10_000 + customer), stamp, "-1", f"{unit:.2f}"))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cust", "day", "qty", "amount"])
        writer.writerows(rows)
    return path


MINIMAL_SOURCE = (
    "use_case/source=csv",
    "use_case.source.columns.customer_id=cust",
    "use_case.source.columns.invoice_date=day",
    "use_case.source.columns.quantity=qty",
    "use_case.source.columns.price=null",
    "use_case.source.columns.amount=amount",
    "use_case.source.columns.invoice=null",
    "use_case.source.columns.stock_code=null",
    "use_case.source.columns.description=null",
    "use_case.source.columns.country=null",
    "use_case.source.timestamp_format=yyyyMMdd",
    "country.source_value=null",
)


@pytest.fixture(scope="module")
def minimal_run(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("minimal")
    source = write_minimal_source(root / "minimal.csv")
    cfg = local_config(
        root / "world",
        *MINIMAL_SOURCE,
        f"use_case.source.path={source}",
        "use_case.split.kind=time",
        "evaluation.run_mode=disabled",
    )
    with every_stage_run(cfg, spark) as run:
        yield run


def test_every_stage_runs_on_the_minimal_shape(minimal_run):
    ctx, results = minimal_run
    assert list(results) == STAGES
    for key in ("transactions", "features", "train", "test", "predictions", "monitoring"):
        assert ctx.tables.read(ctx.table_name(key)).count() > 0, key
    transactions = ctx.tables.read(ctx.table_name("transactions"))
    # one invoice per customer and day
    assert transactions.select("invoice").distinct().count() == (
        transactions.selectExpr("customer_id", "to_date(invoice_date)").distinct().count()
    )
    assert transactions.where("stock_code is not null or country is not null").count() == 0


def test_features_the_data_cannot_inform_are_dropped_and_reported(minimal_run):
    import mlflow

    from mlops.registry import load_run_json

    ctx, results = minimal_run
    dropped = results["train"].details["dropped_features"]
    assert dropped["repurchase_rate_last_year_ahead"] == "entirely null in training"
    assert dropped["distinct_products"] == "entirely null in training"  # no products in the source
    assert set(dropped) & set(results["train"].details["features"]) == set()
    assert "dropped feature repurchase_rate_last_year_ahead: entirely null in training" in results["train"].notes
    run_id = results["train"].run_id
    assert load_run_json(run_id, "config/model_inputs.json")["dropped"] == dropped
    card = mlflow.artifacts.load_text(f"runs:/{results['evaluate'].run_id}/evaluation/model_card.md")
    assert "repurchase_rate_last_year_ahead (entirely null in training)" in card
    # scoring used the model's own, shorter feature list
    predictions = ctx.tables.read(ctx.table_name("predictions"))
    assert predictions.where("prediction is null").count() == 0
