"""Stage split: labelled features -> `train` and `test`, by customer or out of time, sampled outside prod."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.config import parse_date
from mlops.feature_store import FeatureLookupSpec, FeatureTableSpec
from mlops.runtime import RunContext, StageResult
from mlops.splitting import assign_split, assign_time_split, sample_entities

log = logging.getLogger(__name__)


def labelled_snapshots(ctx: RunContext, keys: list[str]) -> DataFrame:
    """The labels as the spine, each with the feature row looked up point in time from the feature table.

    Every label belongs to a (customer, snapshot) row of the feature table (labels are computed for
    the feature population), so each finds its own snapshot's row: the same rows and columns as the
    inner join of features and labels, in the same order (keys, features, labels). The feature
    store never lets a later snapshot's features reach an earlier label.
    """
    features_name = ctx.table_name("features")
    features = ctx.read("features")  # locally, a missing table first runs the features stage
    labels = ctx.read("labels")
    table = FeatureTableSpec.from_key_columns(features_name, keys)
    feature_columns = [column for column in features.columns if column not in keys]
    label_columns = [column for column in labels.columns if column not in keys]
    lookup = FeatureLookupSpec(features_name, table.entity_keys, table.timestamp_key, tuple(feature_columns))
    training_set = ctx.feature_store.create_training_set(labels, [lookup], label=label_columns)
    return training_set.load_df().select(*keys, *feature_columns, *label_columns)


def assign(df: DataFrame, cfg) -> DataFrame:
    """The configured split of the (sampled) labelled snapshots into `train` and `test`
    (use_case.split.kind is checked with the rest of the config, before any work)."""
    spec, keys = cfg.use_case.split, list(cfg.use_case.key_columns)
    if str(spec.get("kind") or "customer") == "customer":
        log.info(
            "sampling %.0f%% of customers (env %s), %.0f%% of them for test",
            100 * cfg.env.sample_fraction,
            cfg.env.name,
            100 * spec.test_fraction,
        )
        return assign_split(df, keys[0], spec.test_fraction, cfg.seed)
    test_date = spec.get("test_date")
    test_date = parse_date(test_date, "use_case.split.test_date") if test_date else None
    log.info(
        "sampling %.0f%% of customers (env %s); out of time: test on snapshot %s, train on snapshots "
        "whose %d-day horizon closes by then",
        100 * cfg.env.sample_fraction,
        cfg.env.name,
        test_date or "(latest)",
        cfg.model.horizon_days,
    )
    return assign_time_split(df, keys[1], test_date, horizon_days=int(cfg.model.horizon_days))


def split(ctx: RunContext) -> StageResult:
    cfg = ctx.cfg
    keys = list(cfg.use_case.key_columns)
    entity = keys[0]
    labelled = labelled_snapshots(ctx, keys)
    sampled = sample_entities(labelled, entity, cfg.env.sample_fraction, cfg.seed)
    assigned = assign(sampled, cfg)
    parts = {part: assigned.where(F.col("split") == part).drop("split") for part in ("train", "test")}
    # pooled: training learns from every country, the gate judges the country's own customers
    parts["test"] = ctx.population.served_rows(parts["test"])
    written = ctx.write_all(parts)
    return StageResult.of_writes("split", written)
