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
from mlops.errors import ConfigError, DataQualityError, MissingInputError
from mlops.lineage import git_commit
from mlops.metrics import metric
from mlops.progress import steps
from mlops.registry import configure_mlflow, fail_orphaned_runs, load_run_json
from mlops.reports import log_figure, monitoring_figures
from mlops.retrain import RetrainOutcome, start_retraining
from mlops.runtime import RunContext, StageResult
from mlops.targets import target_from_dict

log = logging.getLogger(__name__)

# the monitoring table after its date column (use_case.scoring_key)
MONITORING_COLUMNS = (
    "metric string, subject string, value double, threshold double, violated boolean, rows long, model_version string"
)


def monitoring_schema(date: str) -> str:
    return f"`{date}` date, {MONITORING_COLUMNS}"


# the monitoring table's row of the decision, on the latest scoring date: value = violating dates among
# those counted (rows), threshold = monitoring.violations, violated = retraining required, subject = the
# training run started (empty when none)
DECISION_METRIC = "retrain_required"


def decision_row(table: pd.DataFrame, date: str, explained: dict[str, Any], cfg: Any, outcome: RetrainOutcome) -> tuple:
    latest = table[date].max()
    counted = [day for day in explained["dates"] if day["date"] in explained["counted_dates"]]
    version = table.loc[table[date] == latest, "model_version"].iloc[0]
    return (
        latest,
        DECISION_METRIC,
        outcome.run_id or "",
        float(sum(day["violated"] for day in counted)),
        float(cfg.monitoring.violations),
        outcome.required,
        len(counted),
        version,
    )


def retrain_required(violated_by_date: dict[dt.date, bool], violations: int, windows: int) -> bool:
    """MLOps Stacks' rule: >= `violations` of the last `windows` dates broke a threshold, the latest among them."""
    recent = [violated_by_date[day] for day in sorted(violated_by_date)[-windows:]]
    return bool(recent) and recent[-1] and sum(recent) >= violations


def drift_rows(scored: pd.DataFrame, profiles: dict[str, dict[str, Any]], threshold: float, date: str) -> list[tuple]:
    """PSI per feature and of the model's score, per scoring date (column `date`), against the scoring
    run's training profile."""
    rows = []
    groups = scored.groupby([date, "run_id", "model_version"], sort=True)
    for (day, run_id, version), frame in steps(groups, groups.ngroups, "drift, date", lambda g: str(g[0][0]), log):
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
    groups = joined.groupby([date, "run_id", "model_version"], sort=True)
    for (day, run_id, version), frame in steps(
        groups, groups.ngroups, f"realised {name}, date", lambda g: str(g[0][0]), log
    ):
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

    explained, per_date = explain(table, date, cfg)
    retrain = explained["retrain_required"]
    failure: ConfigError | None = None
    try:
        outcome = start_retraining(cfg, retrain, table[date].max())
    except ConfigError as error:  # recorded first, then raised: the decision is never lost
        outcome, failure = RetrainOutcome(True, note=f"nothing started: {error.what}"), error
    explained["retraining"] = outcome.note
    for day in explained["dates"]:
        for feature in day["drifting_features"]:
            log.warning(
                "%s: feature %s drifted: PSI %.3f > %g", day["date"], feature["feature"], feature["psi"], threshold
            )
        if day["performance"] is not None:
            log.info("%s: realised %s %.3f (min %g)", day["date"], day["metric"], day["performance"], day["min"])

    recorded = [*table.itertuples(index=False, name=None), decision_row(table, date, explained, cfg, outcome)]
    written = ctx.write_all({"monitoring": ctx.spark.createDataFrame(recorded, schema)})
    with mlflow.start_run(run_name=f"monitor {cfg.model.name} {cfg.country.code}") as run:
        mlflow.set_tags(
            {
                "stage": "monitor",
                "model": cfg.model.name,
                "country": cfg.country.code,
                "env": cfg.env.name,
                "git_commit": git_commit(cfg),
                "retrain_required": str(retrain),
                "retrain_run_id": outcome.run_id or "",
            }
        )
        mlflow.log_metric("retrain_required", float(retrain))
        mlflow.log_table(
            pd.DataFrame(recorded, columns=table.columns).astype({date: str}), "monitoring/monitoring.json"
        )
        figures = monitoring_figures(table, date, model=cfg.model.name, country=cfg.country.code)
        for figure_name, figure in figures.items():
            log_figure(figure, f"monitoring/{figure_name}")
    log.info(
        "retrain_required=%s (%s) by the rule: %s; dates counted: %s",
        retrain,
        outcome.note,
        explained["rule"],
        ", ".join(
            f"{day['date']} {'violated' if day['violated'] else 'ok'}"
            for day in explained["dates"]
            if day["date"] in explained["counted_dates"]
        ),
    )
    if failure is not None:
        raise failure
    return StageResult.of_writes(
        "monitor",
        written,
        run_id=run.info.run_id,
        details={
            "retrain_required": retrain,
            "retrain_run_id": outcome.run_id,
            "violated_by_date": per_date,
            "explained": explained,
        },
    )


def explain(table: pd.DataFrame, date: str, cfg: Any) -> tuple[dict[str, Any], dict[dt.date, bool]]:
    """Per scoring date: the score's PSI, each drifting feature with its PSI, the realised metric,
    and whether the date violates; then the retrain rule, the dates it counted, and its verdict
    (with the violation flag per date).

    A date violates when its score drifts, its features drift on average, or it underperforms; a
    single drifting feature is named but does not violate alone (one noisy feature is common).
    """
    threshold = float(cfg.monitoring.psi_threshold)
    violations, windows = int(cfg.monitoring.violations), int(cfg.monitoring.windows)
    metric_name, minimum = str(cfg.model.monitoring.performance_metric), float(cfg.model.monitoring.min_performance)
    days, per_date = [], {}
    for day, rows in table.groupby(date, sort=True):
        features = rows[rows["metric"] == "feature_psi"]
        score = rows[rows["metric"] == "prediction_psi"]["value"]
        performance = rows[rows["metric"] == metric_name]["value"]
        mean_psi = float(features["value"].mean()) if len(features) else 0.0
        breach = bool(rows.loc[rows["metric"] != "feature_psi", "violated"].any()) or mean_psi > threshold
        drifting = features[features["value"] > threshold].sort_values("value", ascending=False)
        per_date[day] = breach
        days.append(
            {
                "date": str(day),
                "violated": breach,
                "score_psi": float(score.max()) if len(score) else 0.0,
                "mean_feature_psi": mean_psi,
                "drifting_features": [
                    {"feature": str(name), "psi": float(value)}
                    for name, value in zip(drifting["subject"], drifting["value"])
                ],
                "metric": metric_name,
                "performance": float(performance.iloc[-1]) if len(performance) else None,
                "min": minimum,
            }
        )
    counted = [str(day) for day in sorted(per_date)[-windows:]]
    explained = {
        "retrain_required": retrain_required(per_date, violations, windows),
        "rule": f"retrain when at least {violations} of the last {windows} scoring dates violate, the latest "
        f"among them; a date violates when its score PSI or its mean feature PSI exceeds {threshold:g}, or "
        f"its realised {metric_name} is below {minimum:g}",
        "psi_threshold": threshold,
        "counted_dates": counted,
        "dates": days,
    }
    return explained, per_date
