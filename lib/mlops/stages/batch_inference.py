"""Stage batch_inference: `champion` + features at the scoring dates -> `predictions` (per-date replace)."""

from __future__ import annotations

import datetime as dt
import logging
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from mlops.calendar import monthly_dates
from mlops.config import parse_date
from mlops.errors import ConfigError, DataQualityError, MissingInputError
from mlops.models import ScoredModel
from mlops.registry import alias_version, configure_mlflow, registered_model_name
from mlops.runtime import RunContext, StageResult, stage_command

log = logging.getLogger(__name__)


def champion_model(ctx: RunContext) -> tuple[str, Any, ScoredModel, str | None]:
    """(registered name, version, model, why evaluate ran first or None) of `champion`.

    Scoring never moves an alias as a side effect: without a champion it stops with the command
    to run, unless inference.evaluate_if_no_champion asks for the gate to run first (locally).
    """
    cfg = ctx.cfg
    configure_mlflow(cfg)
    name = registered_model_name(cfg)
    version = alias_version(name, "champion")
    evaluated = None
    if version is None and cfg.inference.evaluate_if_no_champion and cfg.env.run_missing_upstream:
        if str(cfg.evaluation.run_mode) != "enabled":
            # disabled would make the candidate champion unchecked, dry_run would make none
            raise ConfigError(
                f"inference.evaluate_if_no_champion=true runs the gate before {name} gets a champion, "
                f"but evaluation.run_mode={cfg.evaluation.run_mode} does not let the gate decide",
                where="inference.evaluate_if_no_champion",
                fix="use evaluation.run_mode=enabled, or run evaluate (or promote) yourself first",
            )
        evaluated = f"{name} had no champion and inference.evaluate_if_no_champion=true"
        ctx.make("mlflow:champion", f"{name} has no champion yet", where=f"registry alias {name}@champion")
        version = alias_version(name, "champion")
    if version is None:
        raise MissingInputError(
            f"{name} has no champion to score with",
            where=f"registry alias {name}@champion",
            fix=f"run `{stage_command(cfg, 'evaluate')}` (the gate sets champion on a passing candidate), "
            f"or promote a version with `{stage_command(cfg, 'promote')} promote.version=<N>`"
            + (
                ", or add inference.evaluate_if_no_champion=true to run evaluate first"
                if cfg.env.run_missing_upstream
                else ""
            ),
        )
    return name, version, ScoredModel.from_run(version.run_id, f"models:/{name}/{version.version}"), evaluated


def dates_to_score(ctx: RunContext, first_day: dt.date, last_day: dt.date) -> list[dt.date]:
    """The dates to score, from the most specific setting given; default the latest transaction day.

    Every date must lie within the observed data: before the first transaction there is nobody
    to score, and more than inference.max_days_after_data after the last one every customer's
    recency would be measured into a future the data has not seen.
    """
    cfg = ctx.cfg
    backfill = cfg.inference.backfill
    if cfg.inference.dates:
        dates = [parse_date(day, "inference.dates") for day in cfg.inference.dates]
    elif backfill.start or backfill.end:
        start = parse_date(backfill.start or first_day, "inference.backfill.start")
        end = parse_date(backfill.end or last_day, "inference.backfill.end")
        if start > end:
            raise ConfigError(
                f"inference.backfill.start={start} is after inference.backfill.end={end}",
                where="config keys inference.backfill.start / end",
                fix=f"set start <= end; the data runs {first_day} .. {last_day}",
            )
        dates = monthly_dates(start, end, int(backfill.cadence_months))
    elif cfg.inference.date:
        dates = [parse_date(cfg.inference.date, "inference.date")]
    else:
        dates = [last_day]
    early = [day for day in dates if day < first_day]
    if early or not dates:
        raise ConfigError(
            f"scoring date(s) {early or dates} come before the first transaction ({first_day})",
            where="inference.date / inference.dates / inference.backfill",
            fix=f"score on or after {first_day}",
        )
    tolerance = int(cfg.inference.max_days_after_data)
    late = [day for day in dates if day > last_day + dt.timedelta(days=tolerance)]
    if late:
        raise DataQualityError(
            f"scoring date(s) {[str(day) for day in late]} lie more than {tolerance} day(s) after the last "
            f"transaction ({last_day}): the features would describe a future the data has not seen",
            where="inference.date / inference.dates / inference.backfill",
            fix=f"score on or before {last_day + dt.timedelta(days=tolerance)}, load the newer transactions "
            "(re-run extract), or raise inference.max_days_after_data",
        )
    return sorted(set(dates))


def _score_udf(model: ScoredModel, classes: list[int], probability_columns: list[str], keys: list[str]):
    """A mapInPandas function that carries the fitted model in its closure: it runs wherever
    Spark runs Python (local workers, a Connect server, a cluster) with nothing to load there."""
    features, estimator, target = model.features, model.model, model.target

    def score(batches):
        for batch in batches:
            proba = estimator.predict_proba(batch[features].astype("float64"))
            out = pd.DataFrame({key: batch[key] for key in keys})
            for column, values in zip(probability_columns, proba.T):
                out[column] = values
            out["score"] = target.score(proba, np.asarray(classes))
            out["argmax_class"] = np.asarray(classes)[np.argmax(proba, axis=1)].astype("int32")
            yield out

    return score


def _ranked_classes(score: Column, shares: list[float], entity: str, date: str) -> Column:
    """Spark twin of targets.rank_into_shares, per scoring date; ties broken by the entity key."""
    per_date_by_score = Window.partitionBy(date).orderBy(score, F.col(entity))
    position = (F.row_number().over(per_date_by_score) - F.lit(0.5)) / F.count("*").over(Window.partitionBy(date))
    cumulative = np.cumsum(shares) / np.sum(shares)
    expression = F.lit(len(shares) - 1)
    for cls in reversed(range(len(shares) - 1)):
        expression = F.when(position <= F.lit(float(cumulative[cls])), F.lit(cls)).otherwise(expression)
    return expression


def predictions_frame(
    features: DataFrame,
    model: ScoredModel,
    *,
    keys: list[str],
    name: str,
    version: str,
    scored_at: dt.datetime,
    threshold: float | None,
) -> DataFrame:
    """One row per key (entity, scoring date): the prediction, the class probabilities, the score
    monitoring compares, and the model that made it."""
    classes = [int(c) for c in model.model.classes_]
    binary = model.target.task == "binary"
    probability_columns = ["probability"] if binary else [f"probability_{c}" for c in classes]
    key_types = ", ".join(f"`{key}` {features.schema[key].dataType.simpleString()}" for key in keys)
    schema = (
        f"{key_types}, "
        + ", ".join(f"{c} double" for c in (["probability_0"] if binary else []) + probability_columns)
        + ", score double, argmax_class int"
    )
    columns = (["probability_0"] + probability_columns) if binary else probability_columns
    scored = features.select(*keys, *model.features).mapInPandas(_score_udf(model, classes, columns, keys), schema)
    if binary:
        prediction = (F.col("probability") >= F.lit(float(threshold if threshold is not None else 0.5))).cast("int")
    elif model.target.decoding == "ranked_expected_class":
        prediction = _ranked_classes(F.col("score"), list(model.target.class_shares), *keys)
    else:
        prediction = F.col("argmax_class")
    total = reduce(lambda a, b: a + b, (F.col(c) for c in columns))
    return scored.select(
        *keys,
        prediction.cast("int").alias("prediction"),
        *probability_columns,
        "score",
        total.alias("probability_total"),
        F.lit(name).alias("model_name"),
        F.lit(str(version)).alias("model_version"),
        F.lit(model.run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )


def batch_inference(ctx: RunContext) -> StageResult:
    cfg = ctx.cfg
    name, version, model, evaluated = champion_model(ctx)
    transactions = ctx.read("transactions")
    first_day, last_day, _ = ctx.observed_days(transactions)
    dates = dates_to_score(ctx, first_day, last_day)
    log.info("scoring %d date(s) %s .. %s with %s version %s", len(dates), dates[0], dates[-1], name, version.version)

    entity, snapshot = cfg.use_case.key_columns
    scoring = cfg.use_case.scoring_key
    features = ctx.population.feature_function(cfg.model.features.fn)(
        transactions, cfg.use_case.timestamp_column, dates[0], dates[-1], dates=dates
    ).withColumnRenamed(snapshot, scoring)
    features = ctx.population.served_rows(features)  # e.g. a pooled model serves the country's own customers only
    missing = [column for column in model.features if column not in features.columns]
    if missing:
        raise ConfigError(
            f"champion version {version.version} needs features {missing}",
            where="model.features",
            fix="re-train with the current feature function, or promote a matching version",
        )
    features = ctx.cache(features)  # counted, checked, scored and written: computed once
    population = features.count()
    if population == 0:
        # an empty population would replace the dates' predictions with nothing, and pass every contract
        raise DataQualityError(
            f"no customers to score on {[str(day) for day in dates]}: the features at those dates have no rows",
            where=str(ctx.table_name("transactions")),
            fix="score dates that have customers with purchases before them, or re-run extract "
            "on a source with this country's sales; the previous predictions are kept",
        )
    predictions = predictions_frame(
        features,
        model,
        keys=[entity, scoring],
        name=name,
        version=version.version,
        scored_at=ctx.started_at,
        threshold=cfg.model.inference.threshold,
    )
    written = ctx.write_all(
        {"scoring_features": features, "predictions": predictions},
        replace_dates=(scoring, dates),
        extra_expectations={
            "predictions": [
                {
                    "expect_table_row_count_to_equal": {"value": population},
                    "hint": "one prediction per customer in the scoring population",
                }
            ]
        },
    )
    return StageResult.of_writes(
        "batch_inference",
        written,
        details={"dates": dates, "population": population, "version": str(version.version)},
        notes=[f"evaluate ran before scoring: {evaluated}; it set champion to version {version.version}"]
        if evaluated
        else [],
    )
