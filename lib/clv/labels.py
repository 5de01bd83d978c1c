"""Labels per customer and snapshot, only where the whole horizon has been observed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clv.cleaning import money
from clv.features import key_names


def _over_horizon(
    transactions: DataFrame,
    population: DataFrame,
    *,
    key_columns: Sequence[str],
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
    entity, snapshot = key_names(key_columns)
    horizon_end = F.date_add(F.col(snapshot), horizon_days)
    labelled = population.select(entity, snapshot).distinct().where(horizon_end <= F.lit(observed_until))
    future = transactions.select(entity, F.to_date(F.col(timestamp_column)).alias("day"), value.alias("value"))
    totals = (
        labelled.join(future, entity)
        .where((F.col("day") > F.col(snapshot)) & (F.col("day") <= horizon_end))
        .groupBy(entity, snapshot)
        .agg(F.sum("value").alias("total"))
    )
    return labelled.join(totals, [entity, snapshot], "left").select(
        entity,
        snapshot,
        F.coalesce(F.col("total"), default).alias(label_column),
    )


def repurchase_labels(
    transactions: DataFrame,
    population: DataFrame,
    *,
    key_columns: Sequence[str],
    timestamp_column: str,
    observed_until: dt.date,
    horizon_days: int,
    label_column: str = "repurchase",
) -> DataFrame:
    """1 if the customer buys (a non-return line) on a day in (snapshot, snapshot + horizon], else 0.

    `key_columns` (use_case.key_columns): the entity column of `transactions` and `population`,
    then `population`'s snapshot date column; the label table's keys, as in the feature table.
    """
    labels = _over_horizon(
        transactions,
        population,
        key_columns=key_columns,
        timestamp_column=timestamp_column,
        observed_until=observed_until,
        horizon_days=horizon_days,
        value=F.when(~F.col("is_return"), 1).otherwise(0),
        label_column=label_column,
        default=F.lit(0),
    )
    return labels.select(
        *key_names(key_columns), F.least(F.col(label_column), F.lit(1)).cast("int").alias(label_column)
    )


def future_revenue_labels(
    transactions: DataFrame,
    population: DataFrame,
    *,
    key_columns: Sequence[str],
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
        transactions,
        population,
        key_columns=key_columns,
        timestamp_column=timestamp_column,
        observed_until=observed_until,
        horizon_days=horizon_days,
        value=money("revenue"),
        label_column=label_column,
        default=F.lit(0.0),
    )
    return labels.select(*key_names(key_columns), F.col(label_column).cast("double").alias(label_column))
