"""Sampling and train/test assignment: deterministic, by customer, in the configured shares."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.errors import ConfigError
from mlops.splitting import assign_split, assign_time_split, sample_entities


@pytest.fixture
def snapshots(spark):
    # 2,000 customers x 3 snapshots each
    customers = spark.range(2000).select(F.col("id").cast("string").alias("customer_id"))
    return customers.crossJoin(spark.range(3).select(F.col("id").cast("int").alias("snapshot")))


def test_split_is_deterministic_and_keeps_customers_whole(snapshots):
    first = assign_split(snapshots, "customer_id", 0.3, seed=42)
    assertDataFrameEqual(first, assign_split(snapshots, "customer_id", 0.3, seed=42))
    sides = first.groupBy("customer_id").agg(F.countDistinct("split").alias("sides"))
    assert sides.where(F.col("sides") > 1).count() == 0
    test_share = first.where(F.col("split") == "test").count() / first.count()
    assert 0.27 < test_share < 0.33


def test_seed_changes_the_draw(snapshots):
    a = assign_split(snapshots, "customer_id", 0.3, seed=1).where(F.col("split") == "test")
    b = assign_split(snapshots, "customer_id", 0.3, seed=2).where(F.col("split") == "test")
    overlap = a.select("customer_id").distinct().intersect(b.select("customer_id").distinct()).count()
    assert overlap < 0.5 * a.select("customer_id").distinct().count()


def test_sample_keeps_a_share_of_customers_with_all_their_rows(snapshots):
    sampled = sample_entities(snapshots, "customer_id", 0.25, seed=42)
    per_customer = sampled.groupBy("customer_id").count()
    assert per_customer.where(F.col("count") != 3).count() == 0
    assert 400 < per_customer.count() < 600
    assertDataFrameEqual(sampled, sample_entities(snapshots, "customer_id", 0.25, seed=42))


def test_full_fraction_keeps_everything(snapshots):
    assert sample_entities(snapshots, "customer_id", 1.0, seed=42).count() == snapshots.count()


def test_sample_and_split_are_independent_draws(snapshots):
    sampled = sample_entities(snapshots, "customer_id", 0.5, seed=42)
    tested = assign_split(sampled, "customer_id", 0.5, seed=42)
    share = tested.where(F.col("split") == "test").count() / tested.count()
    # with one shared hash the sampled half would be all-train or all-test
    assert 0.4 < share < 0.6


def _monthly(spark, customers: int, dates: list[str]):
    rows = [(str(c), dt.date.fromisoformat(d)) for c in range(customers) for d in dates]
    return spark.createDataFrame(rows, "customer_id string, snapshot_date date")


def test_time_split_tests_one_snapshot_and_trains_only_on_horizons_closed_before_it(spark):
    dates = ["2011-03-09", "2011-04-09", "2011-05-09", "2011-06-09", "2011-07-09", "2011-09-09"]
    assigned = assign_time_split(_monthly(spark, 5, dates), "snapshot_date", dt.date(2011, 9, 9), horizon_days=90)
    by_side = {
        row["split"]: sorted(row["dates"])
        for row in assigned.groupBy("split")
        .agg(F.collect_set(F.col("snapshot_date").cast("string")).alias("dates"))
        .collect()
    }
    # 2011-06-09 + 90 days = 2011-09-07 <= the test date; 2011-07-09's labels reach past it, so it is dropped
    assert by_side == {"train": ["2011-03-09", "2011-04-09", "2011-05-09", "2011-06-09"], "test": ["2011-09-09"]}
    # every customer is tested: out of time, the same customers may be on both sides
    assert assigned.where(F.col("split") == "test").count() == 5


def test_time_split_needs_the_test_date_among_the_snapshots(spark):
    with pytest.raises(ConfigError, match="2011-09-10.*no snapshot") as error:
        assign_time_split(
            _monthly(spark, 2, ["2011-06-09", "2011-09-09"]), "snapshot_date", dt.date(2011, 9, 10), horizon_days=90
        )
    assert "use_case.snapshots.end_date" in error.value.fix


def test_time_split_defaults_to_the_latest_snapshot_with_a_label(spark):
    df = _monthly(spark, 3, ["2011-05-09", "2011-06-09", "2011-08-09", "2011-09-09"])
    assigned = assign_time_split(df, "snapshot_date", None, horizon_days=90)
    tested = {row[0] for row in assigned.where(F.col("split") == "test").select("snapshot_date").distinct().collect()}
    assert tested == {dt.date(2011, 9, 9)}
    # 2011-08-09 + 90 days is past the test date
    assert assigned.where(F.col("split") == "train").select("snapshot_date").distinct().count() == 2


def test_time_split_of_no_labelled_snapshots_says_what_to_change(spark):
    with pytest.raises(ConfigError, match="no labelled snapshots") as error:
        assign_time_split(_monthly(spark, 0, []), "snapshot_date", None, horizon_days=90)
    assert "horizon_days" in error.value.fix
