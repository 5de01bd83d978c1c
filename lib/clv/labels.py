"""Labels per customer and snapshot, only where the whole horizon has been observed."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def repurchase_labels(
    transactions: DataFrame,
    population: DataFrame,
    *,
    timestamp_column: str,
    observed_until: dt.date,
    horizon_days: int,
    label_column: str = "repurchase",
) -> DataFrame:
    """1 if the customer buys (a non-return line) on a day in (snapshot, snapshot + horizon], else 0.

    Snapshots whose horizon ends after `observed_until` get no label at all: a 0 there would
    mean "not yet", which the model must never learn as "never".
    """
    horizon_end = F.date_add(F.col("snapshot_date"), horizon_days)
    labelled = (
        population.select("customer_id", "snapshot_date")
        .distinct()
        .where(horizon_end <= F.lit(observed_until))
    )
    purchase_days = (
        transactions.where(~F.col("is_return"))
        .select("customer_id", F.to_date(F.col(timestamp_column)).alias("day"))
        .distinct()
    )
    bought = (
        labelled.join(purchase_days, "customer_id")
        .where((F.col("day") > F.col("snapshot_date")) & (F.col("day") <= horizon_end))
        .select("customer_id", "snapshot_date")
        .distinct()
        .withColumn("bought", F.lit(1))
    )
    return labelled.join(bought, ["customer_id", "snapshot_date"], "left").select(
        "customer_id",
        "snapshot_date",
        F.coalesce(F.col("bought"), F.lit(0)).cast("int").alias(label_column),
    )
