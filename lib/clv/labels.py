"""Labels per customer and snapshot, only where the whole horizon has been observed."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clv.cleaning import money


def _over_horizon(
    transactions: DataFrame,
    population: DataFrame,
    *,
    timestamp_column: str,
    observed_until: dt.date,
    horizon_days: int,
    value: Column,
    label_column: str,
    default: Column,
) -> DataFrame:
    """Sum `value` over each customer's transactions on days in (snapshot, snapshot + horizon].

    Snapshots whose horizon ends after `observed_until` get no label at all: a 0 there would
    mean "not yet", which the model must never learn as "never".
    """
    horizon_end = F.date_add(F.col("snapshot_date"), horizon_days)
    labelled = (
        population.select("customer_id", "snapshot_date")
        .distinct()
        .where(horizon_end <= F.lit(observed_until))
    )
    future = transactions.select("customer_id", F.to_date(F.col(timestamp_column)).alias("day"),
                                 value.alias("value"))
    totals = (
        labelled.join(future, "customer_id")
        .where((F.col("day") > F.col("snapshot_date")) & (F.col("day") <= horizon_end))
        .groupBy("customer_id", "snapshot_date")
        .agg(F.sum("value").alias("total"))
    )
    return labelled.join(totals, ["customer_id", "snapshot_date"], "left").select(
        "customer_id", "snapshot_date", F.coalesce(F.col("total"), default).alias(label_column),
    )


def repurchase_labels(
    transactions: DataFrame,
    population: DataFrame,
    *,
    timestamp_column: str,
    observed_until: dt.date,
    horizon_days: int,
    label_column: str = "repurchase",
) -> DataFrame:
    """1 if the customer buys (a non-return line) on a day in (snapshot, snapshot + horizon], else 0."""
    labels = _over_horizon(
        transactions, population, timestamp_column=timestamp_column, observed_until=observed_until,
        horizon_days=horizon_days, value=F.when(~F.col("is_return"), 1).otherwise(0),
        label_column=label_column, default=F.lit(0),
    )
    return labels.select("customer_id", "snapshot_date",
                         F.least(F.col(label_column), F.lit(1)).cast("int").alias(label_column))


def future_revenue_labels(
    transactions: DataFrame,
    population: DataFrame,
    *,
    timestamp_column: str,
    observed_until: dt.date,
    horizon_days: int,
    label_column: str = "future_revenue",
) -> DataFrame:
    """Net revenue (purchases minus returns) on days in (snapshot, snapshot + horizon]; 0.0 if none.

    Kept continuous here: the buckets are cut at training time on the training rows only, so the
    label table never leaks test information into the edges.
    """
    labels = _over_horizon(
        transactions, population, timestamp_column=timestamp_column, observed_until=observed_until,
        horizon_days=horizon_days, value=money("revenue"), label_column=label_column, default=F.lit(0.0),
    )
    return labels.select("customer_id", "snapshot_date", F.col(label_column).cast("double").alias(label_column))
