"""Stage monitor: predictions history -> drift and realised performance per scoring date -> retrain flag."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from pyspark.sql import functions as F

from mlops.drift import drift
from mlops.errors import DataQualityError, MissingInputError
from mlops.lineage import git_commit
from mlops.metrics import metric
from mlops.registry import configure_mlflow, fail_orphaned_runs, load_run_json
from mlops.reports import log_figure, monitoring_figures
from mlops.runtime import RunContext, StageResult
from mlops.targets import target_from_dict
from mlops.task_values import publish_task_value

log = logging.getLogger(__name__)

# the monitoring table after its date column (use_case.scoring_key)
MONITORING_COLUMNS = (
    "metric string, subject string, value double, threshold double, violated boolean, rows long, model_version string"
)


def monitoring_schema(date: str) -> str:
    return f"`{date}` date, {MONITORING_COLUMNS}"


def retrain_required(violated_by_date: dict[dt.date, bool], violations: int, windows: int) -> bool:
    """MLOps Stacks' rule: >= `violations` of the last `windows` dates broke a threshold, the latest among them."""
    recent = [violated_by_date[day] for day in sorted(violated_by_date)[-windows:]]
    return bool(recent) and recent[-1] and sum(recent) >= violations


def drift_rows(scored: pd.DataFrame, profiles: dict[str, dict[str, Any]], threshold: float, date: str) -> list[tuple]:
    """PSI per feature and of the model's score, per scoring date (column `date`), against the scoring
    run's training profile."""
    rows = []
    for (day, run_id, version), frame in scored.groupby([date, "run_id", "model_version"], sort=True):
        saved = profiles[run_id]
        values = {**drift(saved["features"], frame), "score": drift(saved["score"], frame)["score"]}
        for subject, value in values.items():
            metric_name = "prediction_psi" if subject == "score" else "feature_psi"
            rows.append((day, metric_name, subject, value, threshold, value > threshold, len(frame), version))
    return rows


def performance_rows(ctx: RunContext, predictions, transactions, observed_until: dt.date) -> list[tuple]:
    """Realised metric per scoring date whose horizon has passed: predictions joined to actual labels."""
    cfg = ctx.cfg
    horizon = int(cfg.model.horizon_days)
    (entity, snapshot), date = cfg.use_case.key_columns, cfg.use_case.scoring_key
    matured = predictions.where(F.date_add(F.col(date), horizon) <= F.lit(observed_until))
    population = matured.select(entity, F.col(date).alias(snapshot))
    labels = instantiate(cfg.model.label.fn)(
        transactions, population, timestamp_column=cfg.use_case.timestamp_column, observed_until=observed_until
    )
    joined = (
        matured.join(labels.withColumnRenamed(snapshot, date), [entity, date])
        .select(date, "run_id", "model_version", "prediction", "score", cfg.model.label.column)
        .toPandas()
    )
    name, minimum = str(cfg.model.monitoring.performance_metric), float(cfg.model.monitoring.min_performance)
    fn, rows = metric(name), []
    for (day, run_id, version), frame in joined.groupby([date, "run_id", "model_version"], sort=True):
        target = target_from_dict(load_run_json(run_id, "config/target.json"))
        y = target.transform(frame[cfg.model.label.column].to_numpy())
        prediction = frame["score" if target.task == "binary" else "prediction"].to_numpy()
        if len(np.unique(y)) < 2:
            log.warning("%s: one class only among %d labelled rows; no %s", day, len(y), name)
            continue
        value = fn(y, prediction)
        rows.append((day, name, "performance", value, minimum, value < minimum, len(frame), version))
    return rows


def monitor(ctx: RunContext) -> StageResult:
    import mlflow

    cfg = ctx.cfg
    name = str(ctx.table_name("predictions"))
    if not ctx.tables.exists(ctx.table_name("predictions")) and not cfg.env.run_missing_upstream:
        raise MissingInputError(f"no predictions to monitor in {name}", where=name, fix="run batch_inference first")
    predictions, features = ctx.read("predictions"), ctx.read("scoring_features")
    transactions = ctx.read("transactions")
    configure_mlflow(cfg)
    fail_orphaned_runs(cfg, "monitor")  # a killed monitor left its run RUNNING

    keys = [cfg.use_case.key_columns[0], cfg.use_case.scoring_key]
    date = keys[1]
    scored: pd.DataFrame = (
        features.join(predictions.select(*keys, "score", "run_id", "model_version"), keys)
        .orderBy(date, keys[0])
        .limit(int(cfg.monitoring.max_rows))
        .toPandas()
    )
    if scored.empty:
        # nothing to measure: an empty monitoring table would replace the last real one
        raise DataQualityError(
            f"no predictions to monitor in {name} (none joins its scoring features)",
            where=f"{name} and {ctx.table_name('scoring_features')}",
            fix="run batch_inference for a date with customers first; the monitoring table is kept as it was",
        )
    profiles = {run_id: load_run_json(run_id, "config/training_profile.json") for run_id in scored["run_id"].unique()}
    threshold = float(cfg.monitoring.psi_threshold)
    _, _, observed_until = ctx.observed_days(transactions)
    rows = drift_rows(scored, profiles, threshold, date) + performance_rows(
        ctx, predictions, transactions, observed_until
    )
    schema = monitoring_schema(date)
    table = pd.DataFrame(rows, columns=[c.split()[0].strip("`") for c in schema.split(", ")])

    # a date violates when its score drifts, its features drift on average, or it underperforms
    per_date = (
        table.assign(
            breach=lambda t: np.where(t["metric"] == "feature_psi", False, t["violated"]),
        )
        .groupby(date)["breach"]
        .any()
        .to_dict()
    )
    mean_feature_psi = table[table["metric"] == "feature_psi"].groupby(date)["value"].mean()
    for day, value in mean_feature_psi.items():
        per_date[day] = per_date.get(day, False) or bool(value > threshold)
    retrain = retrain_required(per_date, int(cfg.monitoring.violations), int(cfg.monitoring.windows))

    written = ctx.write_all(
        {"monitoring": ctx.spark.createDataFrame(list(table.itertuples(index=False, name=None)), schema)}
    )
    with mlflow.start_run(run_name=f"monitor {cfg.model.name} {cfg.country.code}") as run:
        mlflow.set_tags(
            {
                "stage": "monitor",
                "model": cfg.model.name,
                "country": cfg.country.code,
                "env": cfg.env.name,
                "git_commit": git_commit(cfg),
                "retrain_required": str(retrain),
            }
        )
        mlflow.log_metric("retrain_required", float(retrain))
        mlflow.log_table(table.astype({date: str}), "monitoring/monitoring.json")
        for figure_name, figure in monitoring_figures(table, date).items():
            log_figure(figure, f"monitoring/{figure_name}")
    publish_task_value("retrain_required", retrain)
    log.info(
        "retrain_required=%s (violations by date: %s)",
        retrain,
        {str(day): bool(flag) for day, flag in sorted(per_date.items())},
    )
    return StageResult.of_writes(
        "monitor", written, run_id=run.info.run_id, details={"retrain_required": retrain, "violated_by_date": per_date}
    )
