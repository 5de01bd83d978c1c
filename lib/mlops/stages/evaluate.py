"""Stage evaluate: the latest training run -> the gate -> a registered version and its aliases."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from mlops.errors import ConfigError, GateRejectedError
from mlops.frames import first_row
from mlops.gate import Rule, Verdict, decide
from mlops.lineage import git_commit
from mlops.metrics import Improvement, metric, metrics_with_ci, paired_improvement
from mlops.models import ScoredModel, fit_per_snapshot
from mlops.registry import (
    alias_version,
    configure_mlflow,
    describe_version,
    fail_orphaned_runs,
    promote_to_champion,
    register_run_model,
    registered_model_name,
    set_alias,
)
from mlops.reports import FigureSubject, evaluation_figures, log_figure, model_card, permutation_importance_figure
from mlops.runtime import RunContext, StageResult
from mlops.targets import require_classes

log = logging.getLogger(__name__)


def candidate_run(ctx: RunContext, experiment_id: str) -> Any:
    """The explicit evaluation.run_id, or the newest finished training run of this model and country."""
    import mlflow

    cfg = ctx.cfg
    if cfg.evaluation.run_id:
        run = mlflow.get_run(str(cfg.evaluation.run_id))
        if (run.data.tags.get("model"), run.data.tags.get("country")) != (cfg.model.name, cfg.country.code):
            raise ConfigError(
                f"run {run.info.run_id} trained {run.data.tags.get('model')} for "
                f"{run.data.tags.get('country')}, not {cfg.model.name} for {cfg.country.code}",
                where="evaluation.run_id",
                fix="pass a run of this model and country",
            )
        return run
    query = (
        f"tags.stage = 'train' and tags.model = '{cfg.model.name}' and tags.country = '{cfg.country.code}' "
        "and attributes.status = 'FINISHED'"
    )
    runs = mlflow.search_runs(
        [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1, output_format="list"
    )
    if runs:
        return runs[0]
    made = ctx.make(
        "mlflow:training_run",
        f"no finished training run of {cfg.model.name} for {cfg.country.code}",
        where=f"MLflow experiment {cfg.use_case.experiment}",
    )
    return mlflow.get_run(str(made.run_id))


def _custom_metrics(cfg) -> dict[str, tuple[Any, dict[str, float]]]:
    """name -> (fn, bounds) for evaluation.custom_metrics entries."""
    out = {}
    for entry in cfg.evaluation.custom_metrics or []:
        bounds = {kind: float(entry[kind]) for kind in ("min", "max") if entry.get(kind) is not None}
        out[str(entry.name)] = (instantiate(entry.fn), bounds)
    return out


def _resampling(cfg, groups) -> dict[str, Any]:
    """How every interval of an evaluation is drawn: whole entities, as many times as configured,
    with the run's seed; the same for each metric and each paired difference."""
    return {
        "groups": groups,
        "n_resamples": int(cfg.evaluation.bootstrap_resamples),
        "confidence": float(cfg.evaluation.confidence),
        "seed": int(cfg.seed),
    }


def _score(names, y, prediction, groups, cfg, custom=None) -> dict[str, float]:
    values = metrics_with_ci(names, y, prediction, **_resampling(cfg, groups))
    for name, (fn, _) in (custom or {}).items():
        values[name] = float(fn(y, prediction))
    return values


def _baseline_prediction(ctx: RunContext, target: Any, test: pd.DataFrame) -> tuple[np.ndarray | None, dict]:
    """The configured textbook model on the test rows, fitted per snapshot on every customer the
    snapshot knows (train and test: the fit sees histories, never labels)."""
    from pyspark.sql import functions as F

    spec = ctx.cfg.model.get("baseline")
    if not spec:
        return None, {}
    keys, columns = list(ctx.cfg.use_case.key_columns), list(spec.columns)
    dates = sorted(set(test[keys[1]].tolist()))
    train = ctx.read("train").where(F.col(keys[1]).isin(dates)).select(*keys, *columns).toPandas()
    fit_rows = pd.concat([train, test[keys + columns]], ignore_index=True)
    horizon = ctx.cfg.model.horizon_days
    score, fits = fit_per_snapshot(
        lambda: instantiate(spec.estimator),
        fit_rows,
        test[keys + columns],
        keys[1],
        lambda model, rows: getattr(model, spec.method)(rows, horizon),
    )
    return target.from_score(score), fits


def _improvements(
    names: list[str], y: np.ndarray, prediction: np.ndarray, reference: np.ndarray | None, groups, cfg
) -> dict[str, Improvement] | None:
    if reference is None:
        return None
    return {name: paired_improvement(name, y, prediction, reference, **_resampling(cfg, groups)) for name in names}


def _champion(name: str, candidate: ScoredModel, test: pd.DataFrame) -> tuple[Any, ScoredModel | None, str]:
    version = alias_version(name, "champion")
    if version is None:
        return None, None, "no champion yet"
    if version.run_id == candidate.run_id:
        return version, candidate, f"the candidate is already champion (version {version.version})"
    champion = ScoredModel.from_run(version.run_id, f"models:/{name}/{version.version}")
    missing = [column for column in champion.features if column not in test.columns]
    if missing:
        return version, None, f"champion version {version.version} needs features {missing} the test table lacks"
    return version, champion, f"champion is version {version.version}"


def _plan(run_mode: str, verdict: Verdict, champion_version: Any, comparable: bool) -> tuple[bool, list[str]]:
    """(register?, aliases to set, in order) for the run mode and verdict; the registry is touched only after logging.

    `champion` comes last and is set by `promote_to_champion`, which then takes `challenger` off the
    version again: a promoted version ends up holding `champion` only.
    """
    if run_mode == "dry_run":
        return True, []
    if run_mode == "disabled":
        return True, ["challenger"] + ([] if champion_version is not None else ["champion"])
    if not verdict.passed:
        return False, []
    promote = verdict.beats_champion and (comparable or champion_version is None)
    return True, ["challenger"] + (["champion"] if promote else [])


def evaluate(ctx: RunContext) -> StageResult:
    import mlflow

    cfg = ctx.cfg
    run_mode = str(cfg.evaluation.run_mode)
    experiment_id = configure_mlflow(cfg)
    fail_orphaned_runs(cfg, "evaluate")  # a killed evaluate left its run RUNNING
    name = registered_model_name(cfg)
    run = candidate_run(ctx, experiment_id)
    candidate = ScoredModel.from_run(run.info.run_id, run.data.tags["model_uri"])

    keys, label = list(cfg.use_case.key_columns), cfg.model.label.column
    test: pd.DataFrame = ctx.read("test").orderBy(*keys).toPandas()
    y = candidate.target.transform(test[label].to_numpy())
    require_classes(y, "test", str(ctx.table_name("test")))
    groups = test[keys[0]].to_numpy()
    names = list(cfg.model.metrics)
    custom = _custom_metrics(cfg)

    prediction = candidate.predict(test)
    candidate_scores = _score(names, y, prediction, groups, cfg, custom)
    scores: dict[str, dict[str, float] | None] = {"candidate": candidate_scores}
    baseline_prediction, baseline_fits = _baseline_prediction(ctx, candidate.target, test)
    scores["baseline"] = None if baseline_prediction is None else _score(names, y, baseline_prediction, groups, cfg)
    champion_version, champion, champion_note = _champion(name, candidate, test)
    champion_prediction = None if champion is None else champion.predict(test)
    scores["champion"] = None if champion_prediction is None else _score(names, y, champion_prediction, groups, cfg)
    log.info("%s; candidate run %s", champion_note, candidate.run_id)
    # paired: the candidate's improvement over each reference on the same resampled customers
    improvements = {
        role: _improvements(names, y, prediction, reference, groups, cfg)
        for role, reference in (("baseline", baseline_prediction), ("champion", champion_prediction))
    }

    gate = cfg.model.gate
    thresholds = {key: dict(value) for key, value in gate.thresholds.items()}
    thresholds.update({key: bounds for key, (_, bounds) in custom.items() if bounds})
    versus_baseline, versus_champion = Rule.of(gate.versus_baseline), Rule.of(gate.versus_champion)
    verdict = decide(
        candidate_scores,
        thresholds=thresholds,
        versus_baseline=versus_baseline,
        over_baseline=(improvements["baseline"] or {}).get(versus_baseline.metric) if versus_baseline else None,
        versus_champion=versus_champion,
        over_champion=(improvements["champion"] or {}).get(versus_champion.metric) if versus_champion else None,
        has_champion=champion is not None,
    )
    register, aliases = _plan(run_mode, verdict, champion_version, champion is not None)
    action = (
        f"register {name} and set {', '.join(aliases) or 'no alias'}"
        if register
        else "nothing registered; aliases unchanged"
    )
    if "champion" in aliases:
        action += " (champion then takes challenger off this version)"
    log.info("gate %s (run_mode %s): %s", "passed" if verdict.passed else "failed", run_mode, action)

    from pyspark.sql import functions as F

    trained_on = first_row(
        ctx.read("train").agg(
            F.count("*").alias("rows"),
            F.countDistinct(keys[0]).alias("entities"),
            F.min(keys[1]).alias("first"),
            F.max(keys[1]).alias("last"),
        )
    )
    facts = {
        "model": f"{cfg.model.name} for {cfg.country.code} ({cfg.env.name})",
        "candidate run": candidate.run_id,
        f"train rows / {keys[0]}s": f"{trained_on['rows']} / {trained_on['entities']}",
        "train snapshots": f"{trained_on['first']} .. {trained_on['last']} (every {cfg.use_case.snapshots.cadence_months}"
        " month(s))",
        f"test rows / {keys[0]}s": f"{len(test)} / {test[keys[0]].nunique()}",
        "test snapshots": f"{test[keys[1]].min()} .. {test[keys[1]].max()}",
        "horizon": f"{cfg.model.horizon_days} days",
        "test class shares": ", ".join(f"{c}: {np.mean(y == c):.1%}" for c in np.unique(y)),
        "champion": champion_note,
        "run mode": run_mode,
        "dropped features": "; ".join(f"{column} ({why})" for column, why in candidate.dropped.items()) or "none",
    }
    card = model_card(
        title=f"{name}: evaluation of run {candidate.run_id}",
        facts=facts,
        metric_names=names,
        candidate=candidate_scores,
        baseline=scores["baseline"],
        champion=scores["champion"],
        improvements=improvements,
        verdict=verdict.to_dict(),
        action=action,
        confidence=float(cfg.evaluation.confidence),
    )

    improvement_metrics = {
        f"improvement_over_{role}_{name}{suffix}": value
        for role, values in improvements.items()
        for name, improvement in (values or {}).items()
        for suffix, value in (("", improvement.estimate), ("_ci_low", improvement.low), ("_ci_high", improvement.high))
        if np.isfinite(value)
    }
    with mlflow.start_run(run_name=f"evaluate {cfg.model.name} {cfg.country.code}") as evaluation_run:
        mlflow.set_tags(
            {
                "stage": "evaluate",
                "model": cfg.model.name,
                "country": cfg.country.code,
                "env": cfg.env.name,
                "candidate_run_id": candidate.run_id,
                "run_mode": run_mode,
                "verdict": "passed" if verdict.passed else "failed",
                "git_commit": git_commit(cfg),
            }
        )
        for role, values in scores.items():
            if values:
                mlflow.log_metrics({f"{role}_{key}": value for key, value in values.items() if np.isfinite(value)})
        if baseline_fits:
            mlflow.log_params(
                {
                    "baseline.snapshots": len(baseline_fits),
                    "baseline.customers": sum(fit["customers"] for fit in baseline_fits.values()),
                }
            )
            mlflow.log_dict(baseline_fits, "evaluation/baseline_fits.json")
        mlflow.log_metrics(improvement_metrics)
        mlflow.log_dict(verdict.to_dict(), "evaluation/verdict.json")
        mlflow.log_dict(scores, "evaluation/metrics.json")
        mlflow.log_text(card, "evaluation/model_card.md")
        subject = FigureSubject(
            cfg.model.name,
            cfg.country.code,
            f"candidate run {candidate.run_id[:8]}",
            f"evaluated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d}",
        )
        label = f"{cfg.model.label.column} in {cfg.model.horizon_days} days"
        figures = evaluation_figures(candidate.target, y, prediction, baseline_prediction, subject=subject, label=label)
        for file_name, figure in figures.items():
            log_figure(figure, f"evaluation/{file_name}")
        _log_importance(candidate, test, y, names[0], cfg, subject)

    version, held, challenger_removed = None, [], False
    if register:
        version = register_run_model(name, candidate.run_id, run.data.tags["model_uri"])
        describe_version(
            name,
            version.version,
            card,
            {
                "gate.verdict": "passed" if verdict.passed else "failed",
                "gate.run_mode": run_mode,
                "evaluation_run_id": evaluation_run.info.run_id,
                **{f"gate.{check.name}": "pass" if check.passed else "fail" for check in verdict.checks},
            },
        )
        for alias in aliases:  # champion last: a crash before it leaves the old champion serving
            if alias == "champion":
                challenger_removed = promote_to_champion(name, version.version)
            else:
                set_alias(name, alias, version.version)
        held = sorted(mlflow.MlflowClient().get_model_version(name, str(version.version)).aliases)
        log.info(
            "%s version %s holds %s%s",
            name,
            version.version,
            ", ".join(held) or "no alias",
            "; challenger removed: it is champion now" if challenger_removed else "",
        )
    if run_mode == "enabled" and not verdict.passed:
        raise GateRejectedError(
            f"{name}: candidate run {candidate.run_id} failed the gate: " + "; ".join(verdict.reasons),
            where=f"evaluation run {evaluation_run.info.run_id}",
            fix="see the model card there; the champion is unchanged",
        )
    return StageResult(
        stage="evaluate",
        run_id=evaluation_run.info.run_id,
        metrics={
            **{f"{role}_{key}": value for role, values in scores.items() if values for key, value in values.items()},
            **improvement_metrics,
        },
        details={
            "verdict": verdict.to_dict(),
            "version": None if version is None else str(version.version),
            "aliases": held,
            "aliases_set": aliases,
            "challenger_removed": challenger_removed,
            "candidate_run_id": candidate.run_id,
        },
    )


def _log_importance(
    candidate: ScoredModel, test: pd.DataFrame, y: np.ndarray, metric_name: str, cfg, subject: FigureSubject
) -> None:
    import mlflow

    rows = min(len(test), int(cfg.evaluation.importance_rows))
    sample = test.iloc[:rows]
    metric_fn = metric(metric_name)

    def score(model, X, y_true):
        return metric_fn(y_true, candidate.target.predict(model.predict_proba(X), model.classes_))

    try:
        figure, table = permutation_importance_figure(
            candidate.model,
            sample[candidate.features].astype("float64"),
            y[:rows],
            score,
            int(cfg.seed),
            metric_name=metric_name,
            subject=subject,
        )
    except ValueError as exc:  # e.g. one class in the sample: importance is undefined, not fatal
        log.warning("permutation importance skipped: %s", exc)
        return
    log_figure(figure, "evaluation/permutation_importance.png")
    mlflow.log_table(table, "evaluation/permutation_importance.json")
