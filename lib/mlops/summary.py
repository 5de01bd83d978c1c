"""What a run tells the person who started it: the closing summary, and each stage's data-quality report.

The summary is built from the StageResults of one script run (upstream stages included), printed
on stdout and logged as JSON to every MLflow run the script made, so the same facts are in the
terminal, in a job's output and next to the model.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)

SUMMARY_ARTIFACT = "summary/run_summary.json"


def quality_folder(cfg: DictConfig, stage: str) -> Path:
    """The latest data-quality report of a stage for this model and country (earlier ones are in MLflow)."""
    pair = f"{cfg.use_case.name}_{cfg.model.name}_{cfg.country.suffix}"
    return Path(cfg.env.storage_root) / "data_quality" / pair / stage


def publish_quality(ctx: RunContext, stage: str, validations: list[Any], result: StageResult | None) -> dict[str, str]:
    """Write the stage's validation results and Data Docs, and log them to the stage's MLflow run
    (a run of their own, FAILED when the stage failed, for stages that make none).

    Never raises: the report must not replace the stage's own outcome, e.g. its contract failure.
    """
    if not validations:
        return {}
    try:
        return _publish_quality(ctx, stage, validations, result)
    except Exception as error:  # a report that cannot be written is a warning, not a failed stage
        log.warning("data-quality report of %s not written: %s", stage, str(error).splitlines()[0][:300])
        return {}


def _publish_quality(ctx: RunContext, stage: str, validations: list[Any], result: StageResult | None) -> dict[str, str]:
    from mlflow import MlflowClient

    from mlops.quality import publish
    from mlops.registry import configure_mlflow

    cfg = ctx.cfg
    folder = quality_folder(cfg, stage)
    shutil.rmtree(folder, ignore_errors=True)
    docs = publish(validations, folder)
    experiment_id = configure_mlflow(cfg)
    client = MlflowClient()
    run_id = result.run_id if result is not None else None
    if run_id is None:
        run = client.create_run(
            experiment_id,
            run_name=f"{stage} {cfg.model.name} {cfg.country.code}",
            tags={
                "stage": stage,
                "use_case": cfg.use_case.name,
                "model": cfg.model.name,
                "country": cfg.country.code,
                "env": cfg.env.name,
            },
        )
        run_id = run.info.run_id
        client.log_artifacts(run_id, str(folder), "data_quality")
        client.set_terminated(run_id, "FINISHED" if result is not None else "FAILED")
    else:
        client.log_artifacts(run_id, str(folder), "data_quality")
    failed = sum(1 for record in validations if not record.success)
    log.info("data-quality report of %s: %s (%d failed of %d)", stage, docs, failed, len(validations))
    return {"docs": str(docs), "folder": str(folder), "run_id": run_id, "failed": str(failed)}


def build(cfg: DictConfig, results: list[StageResult]) -> dict[str, Any]:
    """The facts of one script run, as JSON-able values."""
    summary: dict[str, Any] = {
        "use_case": cfg.use_case.name,
        "model": cfg.model.name,
        "country": cfg.country.code,
        "env": cfg.env.name,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stages": [
            {
                "stage": r.stage,
                "seconds": round(r.seconds, 1),
                "upstream": r.upstream,
                "run_id": r.run_id,
                "spark_jobs": r.spark_jobs,
                "spark_queries": r.spark_queries,
            }
            for r in results
        ],
        "tables": [
            {
                "stage": r.stage,
                "table": key,
                "name": _table_name(cfg, key),
                "version": version,
                "rows": r.rows.get(key),
            }
            for r in results
            for key, version in r.tables.items()
        ],
        "mlflow": {
            "experiment": str(cfg.use_case.experiment),
            "tracking_uri": str(cfg.env.mlflow.tracking_uri),
            "runs": {r.stage: r.run_id or r.data_quality.get("run_id") for r in results},
        },
        "data_quality": {r.stage: r.data_quality.get("docs") for r in results if r.data_quality},
        "notes": [f"{r.stage}: {note}" for r in results for note in r.notes],
    }
    for r in results:
        if r.stage == "train":
            summary["training"] = {
                "run_id": r.run_id,
                "metrics": {k: v for k, v in r.metrics.items() if k.startswith("test_")},
                "features": len(r.details.get("features", [])),
            }
        elif r.stage == "evaluate":
            summary["gate"] = _gate(cfg, r)
        elif r.stage == "batch_inference":
            summary["scoring"] = {
                "version": r.details.get("version"),
                "dates": [str(day) for day in r.details.get("dates", [])],
                "population": r.details.get("population"),
            }
        elif r.stage == "monitor":
            summary["monitoring"] = r.details.get("explained", {})
        elif r.stage == "promote":
            summary["promotion"] = {"registered_model": str(cfg.use_case.registered_model), **r.details}
    return summary


def _table_name(cfg: DictConfig, key: str) -> str:
    """The table's full name, as RunContext.table_name gives it; the key itself for what is not a
    use-case table (load_sample's `source`)."""
    from mlops.tables import TableName

    table = (cfg.use_case.tables or {}).get(key)
    return str(TableName.of(cfg.env.catalog, cfg.env.schema, table)) if table else key


def _gate(cfg: DictConfig, result: StageResult) -> dict[str, Any]:
    """Candidate vs baseline vs champion per metric (with intervals), each check, and what moved."""
    verdict = result.details.get("verdict", {})
    metrics = {}
    for name in cfg.model.metrics:
        row: dict[str, Any] = {}
        for role in ("candidate", "baseline", "champion"):
            value = result.metrics.get(f"{role}_{name}")
            if value is not None:
                row[role] = value
                low, high = result.metrics.get(f"{role}_{name}_ci_low"), result.metrics.get(f"{role}_{name}_ci_high")
                if low is not None and high is not None:
                    row[f"{role}_ci"] = [low, high]
        for role in ("baseline", "champion"):
            estimate = result.metrics.get(f"improvement_over_{role}_{name}")
            if estimate is not None:
                low = result.metrics.get(f"improvement_over_{role}_{name}_ci_low", float("nan"))
                high = result.metrics.get(f"improvement_over_{role}_{name}_ci_high", float("nan"))
                row[f"over_{role}"] = [estimate, low, high]
        metrics[str(name)] = row
    return {
        "run_mode": str(cfg.evaluation.run_mode),
        "passed": verdict.get("passed"),
        "beats_champion": verdict.get("beats_champion"),
        "metrics": metrics,
        "checks": [
            {
                "check": c["name"],
                "passed": c["passed"],
                "value": c["value"],
                "reference": c["reference"],
                "rule": c["detail"],
            }
            for c in verdict.get("checks", [])
        ],
        "registered_model": str(cfg.use_case.registered_model),
        "version": result.details.get("version"),
        "aliases_set": result.details.get("aliases_set", []),
        "aliases_held": result.details.get("aliases", []),
    }


def log_summary(summary: dict[str, Any]) -> None:
    """The summary as JSON in every MLflow run this script made (the train run, the evaluation run...)."""
    from mlflow import MlflowClient

    runs = {run_id for run_id in summary["mlflow"]["runs"].values() if run_id}
    if not runs:
        return
    client = MlflowClient()
    for run_id in sorted(runs):
        try:
            client.log_dict(run_id, summary, SUMMARY_ARTIFACT)
        except Exception as error:  # the run's outcome stands; only its copy of the summary is missing
            log.warning("summary not logged to run %s: %s", run_id, str(error).splitlines()[0][:200])


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _rows(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def render(summary: dict[str, Any], ui_hint: str | None) -> str:
    """The summary for a person: short, aligned, and ending with where to look next."""
    lines = [
        f"== {summary['use_case']} {summary['model']} {summary['country']} (env {summary['env']}) ==",
        "stages:",
        *_rows(
            [["stage", "time", "Spark jobs (queries)", "MLflow run", ""]]
            + [
                [
                    s["stage"],
                    f"{s['seconds']:.1f} s",
                    "-" if s.get("spark_jobs") is None else f"{s['spark_jobs']} ({s.get('spark_queries', '-')})",
                    summary["mlflow"]["runs"].get(s["stage"]) or "-",
                    "run first: its output was missing" if s["upstream"] else "",
                ]
                for s in summary["stages"]
            ]
        ),
    ]
    if summary["tables"]:
        lines += [
            "tables written:",
            *_rows(
                [["table", "version", "rows"]]
                + [[t["name"], _number(t["version"]), _number(t["rows"])] for t in summary["tables"]]
            ),
        ]
    mlflow = summary["mlflow"]
    lines += [f"MLflow: experiment {mlflow['experiment']} at {mlflow['tracking_uri']}"]
    if "training" in summary:
        lines += [
            f"trained: run {summary['training']['run_id']}, {summary['training']['features']} features; "
            + ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in summary["training"]["metrics"].items())
        ]
    if "gate" in summary:
        lines += _render_gate(summary["gate"])
    if "scoring" in summary:
        scoring = summary["scoring"]
        dates = scoring["dates"]
        span = dates[0] if len(dates) == 1 else f"{dates[0]} .. {dates[-1]} ({len(dates)} dates)"
        lines += [f"scored: {scoring['population']} rows on {span} with version {scoring['version']}"]
    if "monitoring" in summary:
        lines += _render_monitoring(summary["monitoring"])
    if "promotion" in summary:
        moved = summary["promotion"]
        lines += [
            f"moved {moved['registered_model']}@{moved['alias']}: version {moved['previous'] or 'none'} -> "
            f"{moved['version']}" + ("; its challenger alias removed" if moved["challenger_removed"] else "")
        ]
    if summary["data_quality"]:
        lines += ["data quality (Great Expectations Data Docs):"]
        lines += [f"  {stage}: {docs}" for stage, docs in summary["data_quality"].items()]
    if summary["notes"]:
        lines += ["notes:", *(f"  - {note}" for note in summary["notes"])]
    if ui_hint:
        lines += [f"next: {ui_hint}"]
    return "\n".join(lines)


def _render_gate(gate: dict[str, Any]) -> list[str]:
    verdict = "PASSED" if gate["passed"] else "FAILED"
    lines = [f"gate ({gate['run_mode']}): {verdict}"]
    rows = [["metric", "candidate", "baseline", "champion"]]
    for name, row in gate["metrics"].items():
        cells = [name]
        for role in ("candidate", "baseline", "champion"):
            value = row.get(role)
            ci = row.get(f"{role}_ci")
            cells.append("-" if value is None else f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        rows.append(cells)
    lines += _rows(rows)
    paired = [["paired improvement", "over baseline", "over champion"]]
    for name, row in gate["metrics"].items():
        cells = [row.get(f"over_{role}") for role in ("baseline", "champion")]
        if any(cells):
            paired.append([name, *("-" if c is None else f"{c[0]:+.3f} [{c[1]:+.3f}, {c[2]:+.3f}]" for c in cells)])
    if len(paired) > 1:
        lines += _rows(paired)
    lines += [f"  {'ok  ' if c['passed'] else 'FAIL'} {c['rule']}" for c in gate["checks"]]
    if gate["version"] is not None:
        moved = ", ".join(gate["aliases_set"]) or "no alias"
        lines += [f"registered {gate['registered_model']} version {gate['version']}; set {moved}"]
    else:
        lines += [f"nothing registered; the aliases of {gate['registered_model']} are unchanged"]
    return lines


def _render_monitoring(monitoring: dict[str, Any]) -> list[str]:
    if not monitoring:
        return []
    lines = [f"monitoring: retrain required: {'YES' if monitoring['retrain_required'] else 'no'}"]
    if monitoring["retrain_required"] and monitoring.get("retraining"):
        lines += [f"  retraining: {monitoring['retraining']}"]
    lines += [f"  rule: {monitoring['rule']}"]
    for day in monitoring["dates"]:
        performance = day.get("performance")
        realised = (
            "not yet labelled" if performance is None else f"{day['metric']} {performance:.3f} (min {day['min']:g})"
        )
        drifting = ", ".join(f"{f['feature']} {f['psi']:.2f}" for f in day["drifting_features"]) or "none"
        lines += [
            f"  {day['date']}: {'VIOLATED' if day['violated'] else 'ok'}; {realised}; score PSI "
            f"{day['score_psi']:.2f}; mean feature PSI {day['mean_feature_psi']:.2f}; features with PSI > "
            f"{monitoring['psi_threshold']:g}: {drifting}"
        ]
    if monitoring["counted_dates"]:
        lines += [f"  dates counted by the rule: {', '.join(monitoring['counted_dates'])}"]
    return lines
