"""Stage train: `train` + `test` -> an MLflow run with the fitted model, test metrics and lineage."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.drift import profile
from mlops.errors import TrainingDataError
from mlops.lineage import git_commit
from mlops.metrics import compute_metrics
from mlops.redact import redact_values, redacted_config
from mlops.registry import configure_mlflow, fail_orphaned_runs, log_sklearn_model
from mlops.runtime import RunContext, StageResult
from mlops.splitting import hash_unit
from mlops.targets import require_classes, target_to_dict

log = logging.getLogger(__name__)


def feature_columns(df: DataFrame, keys: list[str], label: str, configured: list[str] | None) -> list[str]:
    """The model's inputs: configured, or every non-key, non-label column in table order."""
    if configured:
        missing = [column for column in configured if column not in df.columns]
        if missing:
            raise TrainingDataError(
                f"configured feature columns {missing} are not in the training table",
                where="model.features.columns",
                fix="re-run the features stage or fix the list",
            )
        return list(configured)
    return [column for column in df.columns if column not in (*keys, label)]


def to_matrix(df: DataFrame, keys: list[str], columns: list[str], label: str, max_rows: int, seed: int):
    """(X, y) on the driver, in key order so a refit sees identical rows; capped by config."""
    rows = df.count()
    if rows > max_rows:
        log.warning("%d rows exceed model.training.max_rows=%d: keeping a deterministic sample", rows, max_rows)
        df = df.where(hash_unit(F.concat_ws("|", *keys), f"cap:{seed}") < F.lit(max_rows / rows))
    frame: pd.DataFrame = df.select(*keys, *columns, label).orderBy(*keys).toPandas()
    # float64 throughout: a count that is whole in training may be missing when scoring, and the
    # logged signature must accept that
    return frame[columns].astype("float64"), frame[label].to_numpy()


def uninformative_features(X: pd.DataFrame) -> dict[str, str]:
    """feature -> why the model cannot learn from it: entirely null or one value throughout training.

    Such columns are what a shape of data the features were not written for leaves behind (seasonal
    features on less than a year of history, product counts from a source without products); some
    estimators and explainers fail on them with errors that name no feature. Missing values
    alongside one value are kept: whether a value is missing can itself be informative.
    """
    dropped = {}
    for column in X.columns:
        values = X[column]
        if values.isna().all():
            dropped[str(column)] = "entirely null in training"
        elif values.nunique(dropna=False) == 1:
            dropped[str(column)] = f"constant in training (always {values.iloc[0]:g})"
    return dropped


def _flat_params(estimator: Any) -> dict[str, Any]:
    return {f"estimator.{key}": value for key, value in estimator.get_params().items()}


def train(ctx: RunContext) -> StageResult:
    import mlflow

    cfg = ctx.cfg
    keys, label = list(cfg.use_case.key_columns), cfg.model.label.column
    train_df, test_df = ctx.read("train"), ctx.read("test")
    columns = feature_columns(train_df, keys, label, cfg.model.features.columns)
    X_train, y_train_raw = to_matrix(train_df, keys, columns, label, cfg.model.training.max_rows, cfg.seed)
    X_test, y_test_raw = to_matrix(test_df, keys, columns, label, cfg.model.training.max_rows, cfg.seed)
    # who scoring will see is decided on every feature (pooled: by the home share), before any is dropped
    home = ctx.population.served_mask(X_train)
    dropped = uninformative_features(X_train)
    for column, reason in dropped.items():
        log.warning("dropped feature %s: %s", column, reason)
    columns = [column for column in columns if column not in dropped]
    if not columns:
        raise TrainingDataError(
            f"every feature is null or constant in training: {dropped}",
            where=str(ctx.table_name("train")),
            fix="more history or more customers (env.sample_fraction), or other model.features.columns",
        )
    X_train, X_test = X_train[columns], X_test[columns]
    target = instantiate(cfg.model.target).fit(y_train_raw)
    y_train, y_test = target.transform(y_train_raw), target.transform(y_test_raw)
    require_classes(y_train, "training", str(ctx.table_name("train")))
    require_classes(y_test, "test", str(ctx.table_name("test")))

    estimator = instantiate(cfg.model.estimator)
    configure_mlflow(cfg)
    fail_orphaned_runs(cfg, "train")  # a killed train left its run RUNNING
    input_versions = ctx.input_versions("train", "test", "features", "labels", "transactions")
    with mlflow.start_run(run_name=f"train {cfg.model.name} {cfg.country.code}") as run:
        mlflow.set_tags(
            redact_values(
                {
                    "use_case": cfg.use_case.name,
                    "model": cfg.model.name,
                    "country": cfg.country.code,
                    "env": cfg.env.name,
                    "stage": "train",
                    "git_commit": git_commit(cfg),
                    **{f"input.{key}.table": str(ctx.table_name(key)) for key in input_versions},
                    **{f"input.{key}.version": str(version) for key, version in input_versions.items()},
                }
            )
        )
        mlflow.log_params(
            redact_values(
                {
                    **_flat_params(estimator),
                    "seed": cfg.seed,
                    "horizon_days": cfg.model.horizon_days,
                    "sample_fraction": cfg.env.sample_fraction,
                    "train_rows": len(y_train),
                    "test_rows": len(y_test),
                    "feature_count": len(columns),
                }
            )
        )
        mlflow.log_text(OmegaConf.to_yaml(redacted_config(cfg)), "config/resolved_config.yaml")
        mlflow.log_dict(
            {"features": columns, "label": label, "keys": keys, "dropped": dropped}, "config/model_inputs.json"
        )
        mlflow.log_dict(target_to_dict(target), "config/target.json")

        started = time.perf_counter()
        estimator.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started
        predictions = target.predict(estimator.predict_proba(X_test), estimator.classes_)
        metrics = {
            f"test_{name}": value for name, value in compute_metrics(cfg.model.metrics, y_test, predictions).items()
        }
        metrics.update(
            fit_seconds=fit_seconds,
            **{f"train_class_share_{c}": float(np.mean(y_train == c)) for c in np.unique(y_train)},
        )
        mlflow.log_metrics(metrics)
        # what monitoring compares scoring-time data with: training feature and score distributions,
        # of the customers that scoring will see (pooled: the country's own)
        train_score = target.score(estimator.predict_proba(X_train[home]), estimator.classes_)
        drifting = [column for column in columns if column not in set(cfg.model.monitoring.get("skip_drift") or [])]
        mlflow.log_dict(
            {"features": profile(X_train[drifting][home]), "score": profile(pd.DataFrame({"score": train_score}))},
            "config/training_profile.json",
        )
        model_info = log_sklearn_model(estimator, input_example=X_train.head(5))
        mlflow.set_tag("model_uri", model_info.model_uri)
    log.info("run %s: %s", run.info.run_id, ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))
    return StageResult(
        stage="train",
        run_id=run.info.run_id,
        metrics=metrics,
        details={"model_uri": model_info.model_uri, "features": columns, "dropped_features": dropped},
        notes=[f"dropped feature {column}: {reason}" for column, reason in dropped.items()],
    )
