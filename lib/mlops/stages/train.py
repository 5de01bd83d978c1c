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
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from mlops.drift import profile
from mlops.errors import ConfigError, TrainingDataError
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


def to_matrix(
    df: DataFrame, keys: list[str], columns: list[str], label: str, max_rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X, y, snapshot dates) on the driver, in key order so a refit sees identical rows; capped by
    config. The dates (the second key column) come with the same collect: calibration splits on them."""
    rows = df.count()
    if rows > max_rows:
        log.warning("%d rows exceed model.training.max_rows=%d: keeping a deterministic sample", rows, max_rows)
        df = df.where(hash_unit(F.concat_ws("|", *keys), f"cap:{seed}") < F.lit(max_rows / rows))
    frame: pd.DataFrame = df.select(*keys, *columns, label).orderBy(*keys).toPandas()
    # float64 throughout: a count that is whole in training may be missing when scoring, and the
    # logged signature must accept that
    return frame[columns].astype("float64"), frame[label].to_numpy(), frame[keys[1]].to_numpy()


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


# CalibratedClassifierCV runs its (default, stratified 5-fold) cross_val_predict even around a frozen
# estimator, whose folds all predict alike: it needs this many calibration rows of at least one class
_CALIBRATION_FOLDS = 5


def calibration_rows(y: np.ndarray, snapshot_dates: np.ndarray, snapshots: int, where: str) -> np.ndarray:
    """Which training rows the calibrator is fitted on: those of the latest `snapshots` distinct
    snapshot dates (a boolean mask over `y`); the estimator is fitted on the others.

    Refuses (TrainingDataError) what cannot be calibrated: no earlier snapshot left for the
    estimator, a part with one class, parts with different classes (the calibrator maps exactly the
    estimator's classes), or too few calibration rows.
    """
    if int(snapshots) < 1:
        raise ConfigError(
            f"model.calibration.snapshots={snapshots} must be at least 1",
            where="model.calibration.snapshots",
            fix="1 or more, or model.calibration.method=null",
        )
    y, snapshot_dates = np.asarray(y), np.asarray(snapshot_dates)
    dates = np.unique(snapshot_dates)
    if len(dates) <= int(snapshots):
        raise TrainingDataError(
            f"calibration on the latest {snapshots} snapshot(s) needs more distinct training snapshots than "
            f"that, for the estimator; the training rows have {len(dates)} "
            f"({', '.join(str(date) for date in dates[:5])}{', ...' if len(dates) > 5 else ''})",
            where=where,
            fix="fewer calibration snapshots (model.calibration.snapshots), more history, or "
            "model.calibration.method=null",
        )
    latest = np.isin(snapshot_dates, dates[-int(snapshots) :])
    described = f"the calibration rows (snapshot(s) {', '.join(str(date) for date in dates[-int(snapshots) :])})"
    fix = (
        "more calibration snapshots (model.calibration.snapshots), more history or customers, or "
        "model.calibration.method=null"
    )
    parts = {"the estimator's rows (the earlier snapshots)": y[~latest], described: y[latest]}
    for part, values in parts.items():
        if len(np.unique(values)) < 2:
            raise TrainingDataError(
                f"{part}: {len(values)} rows with only label value(s) {sorted(set(values.tolist()))}",
                where=where,
                fix=fix,
            )
    estimator_classes, calibration_classes = (set(np.unique(values).tolist()) for values in parts.values())
    if estimator_classes != calibration_classes:
        raise TrainingDataError(
            f"the estimator's rows (the earlier snapshots) hold classes {sorted(estimator_classes)} but {described} "
            f"hold {sorted(calibration_classes)}: the calibrator must see every class the estimator predicts",
            where=where,
            fix=fix,
        )
    largest = int(np.unique(y[latest], return_counts=True)[1].max())
    if largest < _CALIBRATION_FOLDS:
        raise TrainingDataError(
            f"{described}: {int(latest.sum())} rows, at most {largest} of any class; too few to calibrate on "
            f"(at least {_CALIBRATION_FOLDS} of one class)",
            where=where,
            fix=fix,
        )
    return latest


def calibrate(
    estimator: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    snapshot_dates: np.ndarray,
    method: str,
    snapshots: int,
    *,
    where: str = "the training rows",
) -> CalibratedClassifierCV:
    """`estimator` fitted on the earlier training snapshots, inside a `method` calibrator
    (sigmoid | isotonic) fitted on the latest `snapshots` ones (calibration_rows): the fitted model.

    Split by time, not at random, because scoring is out of time: the calibrator learns from
    probabilities the estimator gives on snapshots it never saw, as every scored date is. The
    estimator is frozen while the calibrator is fitted; multiclass models are calibrated one
    class against the rest and renormalised (CalibratedClassifierCV).
    """
    latest = calibration_rows(y, snapshot_dates, snapshots, where)
    y = np.asarray(y)
    fitted = estimator.fit(X[~latest], y[~latest])
    return CalibratedClassifierCV(FrozenEstimator(fitted), method=method).fit(X[latest], y[latest])


def _flat_params(estimator: Any) -> dict[str, Any]:
    return {f"estimator.{key}": value for key, value in estimator.get_params().items()}


def train(ctx: RunContext) -> StageResult:
    import mlflow

    cfg = ctx.cfg
    keys, label = list(cfg.use_case.key_columns), cfg.model.label.column
    train_df, test_df = ctx.read("train"), ctx.read("test")
    columns = feature_columns(train_df, keys, label, cfg.model.features.columns)
    X_train, y_train_raw, train_dates = to_matrix(train_df, keys, columns, label, cfg.model.training.max_rows, cfg.seed)
    X_test, y_test_raw, _ = to_matrix(test_df, keys, columns, label, cfg.model.training.max_rows, cfg.seed)
    # who scoring will see is decided on every feature (pooled: by the home share), before any is dropped
    home = ctx.population.served_mask(X_train)
    target = instantiate(cfg.model.target).fit(y_train_raw)
    y_train, y_test = target.transform(y_train_raw), target.transform(y_test_raw)
    require_classes(y_train, "training", str(ctx.table_name("train")))
    require_classes(y_test, "test", str(ctx.table_name("test")))
    # null: the estimator's own probabilities; else a calibrator on the latest training snapshots,
    # checked here so that data that cannot be calibrated leaves no failed run behind
    method = cfg.model.calibration.method
    method = None if method is None else str(method)
    snapshots = int(cfg.model.calibration.snapshots)
    calibration_dates: list[str] = []
    learning = np.ones(len(y_train), dtype=bool)  # the rows the estimator itself is fitted on
    if method is not None:
        learning = ~calibration_rows(y_train, train_dates, snapshots, str(ctx.table_name("train")))
        calibration_dates = [str(date) for date in np.unique(train_dates[~learning])]
    calibration_count = int((~learning).sum())
    # judged on the estimator's own rows: a seasonal feature that only the calibration snapshot has
    # is as empty to the estimator as one that no snapshot has
    dropped = uninformative_features(X_train[learning])
    if method is not None:
        dropped = {column: f"{why} (the estimator's snapshots, before calibration)" for column, why in dropped.items()}
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
                    "calibration.method": method or "none",
                    "calibration.snapshots": snapshots,
                    "calibration_rows": calibration_count,
                }
            )
        )
        mlflow.log_text(OmegaConf.to_yaml(redacted_config(cfg)), "config/resolved_config.yaml")
        mlflow.log_dict(
            {"features": columns, "label": label, "keys": keys, "dropped": dropped}, "config/model_inputs.json"
        )
        mlflow.log_dict(target_to_dict(target), "config/target.json")

        started = time.perf_counter()
        if method is None:
            model = estimator.fit(X_train, y_train)
        else:
            model = calibrate(
                estimator,
                X_train,
                y_train,
                train_dates,
                method,
                snapshots,
                where=str(ctx.table_name("train")),
            )
        fit_seconds = time.perf_counter() - started
        predictions = target.predict(model.predict_proba(X_test), model.classes_)
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
        train_score = target.score(model.predict_proba(X_train[home]), model.classes_)
        drifting = [column for column in columns if column not in set(cfg.model.monitoring.get("skip_drift") or [])]
        mlflow.log_dict(
            {"features": profile(X_train[drifting][home]), "score": profile(pd.DataFrame({"score": train_score}))},
            "config/training_profile.json",
        )
        model_info = log_sklearn_model(model, input_example=X_train.head(5))
        mlflow.set_tag("model_uri", model_info.model_uri)
    log.info("run %s: %s", run.info.run_id, ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))
    notes = [f"dropped feature {column}: {reason}" for column, reason in dropped.items()]
    if method is not None:
        notes.append(
            f"calibrated ({method}) on {calibration_count} rows of snapshot(s) {', '.join(calibration_dates)}; "
            f"estimator fitted on {len(y_train) - calibration_count} rows"
        )
    return StageResult(
        stage="train",
        run_id=run.info.run_id,
        metrics=metrics,
        details={"model_uri": model_info.model_uri, "features": columns, "dropped_features": dropped},
        notes=notes,
    )
