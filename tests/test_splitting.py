"""Sampling and train/test assignment: deterministic, by customer, in the configured shares."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.splitting import assign_split, sample_entities


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
