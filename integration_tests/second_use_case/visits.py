"""The second use case's own code: cleaning, features and labels of member visits, and its data.

Everything the platform (lib/mlops) needs to run a use case it has never seen: functions named by
config with the MLOps Stacks contracts, column names only from config (use_case.key_columns,
use_case.timestamp_column). Deliberately small; it proves the platform, not a model.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.calendar import monthly_dates

FIRST_DAY = dt.date(2022, 1, 3)
DAYS = 540


def write_visits(path: Path, members: int = 160, seed: int = 7) -> Path:
    """A CSV of visits: each member visits at a rate of their own and may stop visiting for good, so
    recency and frequency predict a return within the horizon."""
    rng = np.random.default_rng(seed)
    rows, number = [], 0
    for member in range(members):
        rate = rng.gamma(2.0, 1 / 40)  # visits per day
        start = int(rng.integers(0, 120))
        stop = int(rng.integers(start + 30, DAYS + 200))  # after DAYS: still visiting at the end
        day = start
        while True:
            day += int(rng.exponential(1 / rate)) + 1
            if day >= min(stop, DAYS):
                break
            number += 1
            visited = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(10 + number % 8, 15))
            rows.append((f"M{member:04d}", visited.isoformat(sep=" "), f"{rng.gamma(3.0, 6.0):.2f}", f"V{number:06d}"))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member_ref", "visited_at", "amount", "visit_no"])
        writer.writerows(rows)
    return path


def clean_visits(df: DataFrame, timestamp_format: str | None = None) -> DataFrame:
    """Canonical strings -> typed visits; a visit without a member is dropped."""
    visited = F.to_timestamp("visited", timestamp_format) if timestamp_format else F.to_timestamp("visited")
    return df.where(F.col("member").isNotNull()).select(
        F.trim("member").alias("member"),
        visited.alias("visited"),
        F.col("amount").cast("double").alias("amount"),
        F.col("visit"),
    )


def visit_features(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    key_columns: Sequence[str],
    cadence_months: int = 1,
    dates: Sequence[dt.date] | None = None,
) -> DataFrame:
    """Per member and snapshot, from visits before the snapshot day: count, spend, days since the last."""
    entity, snapshot = key_columns
    days = list(dates) if dates else monthly_dates(start_date, end_date, cadence_months)
    spark = input_df.sparkSession
    snapshots = spark.createDataFrame([(day,) for day in days], f"`{snapshot}` date")
    day = F.to_date(F.col(timestamp_column))
    history = input_df.crossJoin(snapshots).where(day < F.col(snapshot))
    return history.groupBy(entity, snapshot).agg(
        F.count("*").cast("double").alias("visit_count"),
        F.sum("amount").alias("amount_total"),
        F.datediff(F.first(F.col(snapshot)), F.max(day)).cast("double").alias("days_since_last_visit"),
    )


def came_back_labels(
    input_df: DataFrame,
    population: DataFrame,
    *,
    timestamp_column: str,
    observed_until: dt.date,
    key_columns: Sequence[str],
    horizon_days: int,
    label_column: str,
) -> DataFrame:
    """1 when the member visits in (snapshot, snapshot + horizon]; only snapshots whose horizon has passed."""
    entity, snapshot = key_columns
    matured = population.select(entity, snapshot).where(
        F.date_add(F.col(snapshot), horizon_days) <= F.lit(observed_until)
    )
    day = F.to_date(F.col(timestamp_column))
    visits = input_df.select(entity, day.alias("day"))
    returned = (
        matured.join(visits, entity)
        .where((F.col("day") > F.col(snapshot)) & (F.col("day") <= F.date_add(F.col(snapshot), horizon_days)))
        .select(entity, snapshot)
        .distinct()
        .withColumn(label_column, F.lit(1))
    )
    return matured.join(returned, [entity, snapshot], "left").select(
        entity, snapshot, F.coalesce(F.col(label_column), F.lit(0)).cast("int").alias(label_column)
    )
