"""Deterministic, entity-level sampling and train/test assignment: by hashing the key, or by time."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops.errors import ConfigError
from mlops.frames import first_row

_BUCKETS = 1_000_000


def hash_unit(key: Column, salt: str) -> Column:
    """A uniform number in [0, 1) fixed by (salt, key): the same on every run, cluster and Spark."""
    return F.pmod(F.xxhash64(F.lit(salt), key.cast("string")), F.lit(_BUCKETS)).cast("double") / _BUCKETS


def sample_entities(df: DataFrame, key: str, fraction: float, seed: int) -> DataFrame:
    """Keep every row of a `fraction` of entities: all snapshots of a customer, or none of them."""
    if fraction >= 1.0:
        return df
    return df.where(hash_unit(F.col(key), f"sample:{seed}") < F.lit(fraction))


def assign_split(df: DataFrame, key: str, test_fraction: float, seed: int, column: str = "split") -> DataFrame:
    """Add `column` = 'test' | 'train' by entity, so no customer is on both sides.

    The salt differs from sampling's, so which customers are sampled and which are tested
    are independent draws.
    """
    is_test = hash_unit(F.col(key), f"split:{seed}") < F.lit(test_fraction)
    return df.withColumn(column, F.when(is_test, F.lit("test")).otherwise(F.lit("train")))


def assign_time_split(
    df: DataFrame, date_column: str, test_date: dt.date | None, *, horizon_days: int, column: str = "split"
) -> DataFrame:
    """Out-of-time: `test` is the snapshot on `test_date`, `train` every snapshot whose label horizon
    closes on or before it; snapshots in between are dropped.

    The customer split measures how well a model generalises to unseen customers at the same
    moments; this one measures what production does: a model trained on the past, scored on a
    later date whose outcome it could not have seen. No training label looks past the test
    date, so nothing of the test outcome leaks into training. None picks the latest snapshot.
    """
    snapshot = F.col(date_column)
    if test_date is None:
        test_date = first_row(df.agg(F.max(snapshot)))[0]
        if test_date is None:
            raise ConfigError(
                "no labelled snapshots to split",
                where="use_case.split",
                fix="more history or a shorter model.horizon_days",
            )
    elif not df.where(snapshot == F.lit(test_date)).limit(1).count():
        raise ConfigError(
            f"use_case.split.test_date={test_date} has no snapshot with labels",
            where="use_case.split.test_date",
            fix="a snapshot date: the snapshot calendar is anchored on use_case.snapshots.end_date, "
            "so set that to the test date (its labels need horizon_days of data after it)",
        )
    is_test = snapshot == F.lit(test_date)
    is_train = F.date_add(snapshot, horizon_days) <= F.lit(test_date)
    return df.where(is_test | is_train).withColumn(column, F.when(is_test, F.lit("test")).otherwise(F.lit("train")))
