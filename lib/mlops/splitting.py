"""Deterministic, entity-level sampling and train/test assignment by hashing the key."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

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
