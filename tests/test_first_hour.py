"""What a newcomer meets first: --help, the Java check, progress, the closing summary and its hints."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from mlops import summary
from mlops.cli import ui_hint
from mlops.config import compose_config
from mlops.errors import MachineError
from mlops.progress import interactive
from mlops.runtime import StageResult, stage_command
from mlops.stages.monitor import explain
from mlops.worlds import java_version
from tests.timing import timed

REPO = Path(__file__).resolve().parents[1]


@timed("a script in a process of its own")
def run_script(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_help_lists_groups_and_the_options_people_change_and_each_option_exists(tmp_path):
    helped = run_script("--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    text = helped.stdout
    assert "model: ltv_bucket, repurchase" in text and "use_case/source: bundled, csv, parquet, table" in text
    assert "--cfg job --resolve" in text
    assert "_target_" not in text and len(text.splitlines()) < 60  # not the whole config tree
    options = re.findall(r"^\s+([a-z_]+(?:[./][a-z_]+)+)=", text.split("== Options people change ==")[1], re.M)
    assert len(options) >= 8
    cfg = compose_config([])
    for key in options:  # a renamed key must not survive in the help
        group = key.replace("/", ".")
        assert OmegaConf.select(cfg, group, default="<missing>") != "<missing>", key


def test_cfg_job_resolve_shows_values_not_interpolations(tmp_path):
    shown = run_script("--cfg", "job", "--resolve", "--package", "use_case", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "${" not in shown.stdout and "transactions: clv_transactions_de" in shown.stdout


def fake_java(folder: Path, version_line: str) -> Path:
    """A java binary that answers -version as the real one does (on stderr)."""
    binary = folder / "bin" / "java"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_java_check_reads_the_version_the_launcher_would_use(tmp_path, line, major):
    home = fake_java(tmp_path / "jdk", line)
    environ = {"JAVA_HOME": str(home), "PATH": os.environ["PATH"]}
    if major >= 17:
        assert java_version(environ) == (major, str(home / "bin" / "java"))
        return
    with pytest.raises(MachineError) as error:
        java_version(environ)
    assert f"Java {major}" in error.value.what and "too old" in error.value.what
    assert "adoptium" in error.value.fix and error.value.exit_code == 12


def test_java_check_without_java_names_where_it_looked(tmp_path):
    with pytest.raises(MachineError) as error:
        java_version({"JAVA_HOME": str(tmp_path / "nowhere"), "PATH": os.environ["PATH"]})
    assert "no Java runtime found" in error.value.what and "JAVA_HOME=" in error.value.where
    with pytest.raises(MachineError) as error:
        java_version({"PATH": str(tmp_path)})
    assert error.value.where == "PATH"


def test_a_script_without_java_exits_12_with_the_hint_before_spark(tmp_path):
    result = run_script(f"env.storage_root={tmp_path}/root", cwd=tmp_path, env={"JAVA_HOME": str(tmp_path / "no-jdk")})
    assert result.returncode == MachineError.exit_code, result.stderr
    assert "no Java runtime found" in result.stderr and "install a Java 17 or 21" in result.stderr
    assert "Traceback" not in result.stderr and "Py4J" not in result.stderr
    # nothing but the run lock was created: no table, no MLflow store
    assert {path.name for path in (tmp_path / "root").iterdir()} <= {"locks"}


def test_progress_is_quiet_in_ci_and_jobs(monkeypatch):
    for name in ("CI", "TF_BUILD", "DATABRICKS_RUNTIME_VERSION"):
        monkeypatch.setenv(name, "true")
        assert not interactive()
        monkeypatch.delenv(name)


def test_ui_hint_names_the_store_when_it_is_not_the_default(tmp_path):
    default = compose_config([])
    assert ui_hint(default).startswith("make ui, then open http://127.0.0.1:5000")
    elsewhere = compose_config([f"env.storage_root={tmp_path}"])
    assert f"make ui STORE={tmp_path}," in ui_hint(elsewhere)
    assert "Databricks workspace" in ui_hint(compose_config(["env=dev"]))
    assert stage_command(compose_config(["env=dev", "model=ltv_bucket"]), "evaluate") == (
        "python scripts/evaluate.py model=ltv_bucket country=DE env=dev"
    )


def results() -> list[StageResult]:
    return [
        StageResult(
            "extract",
            {"transactions": 3},
            {"transactions": 1200, "source": 1300},
            seconds=2.04,
            upstream=True,
            spark_jobs=6,
            spark_queries=3,
        ),
        StageResult(
            "train",
            run_id="run-train",
            metrics={"test_roc_auc": 0.81, "fit_seconds": 0.4},
            details={"features": ["a", "b", "c"]},
            notes=["dropped feature month_sin: entirely null in training"],
            seconds=5.0,
        ),
        StageResult(
            "evaluate",
            run_id="run-eval",
            metrics={
                "candidate_roc_auc": 0.81,
                "candidate_roc_auc_ci_low": 0.75,
                "candidate_roc_auc_ci_high": 0.86,
                "baseline_roc_auc": 0.74,
                "candidate_pr_auc": 0.7,
                "improvement_over_baseline_roc_auc": 0.07,
                "improvement_over_baseline_roc_auc_ci_low": 0.012,
                "improvement_over_baseline_roc_auc_ci_high": 0.131,
            },
            details={
                "verdict": {
                    "passed": True,
                    "beats_champion": True,
                    "checks": [
                        {
                            "name": "threshold.roc_auc.min",
                            "passed": True,
                            "value": 0.81,
                            "reference": 0.6,
                            "detail": "roc_auc=0.8100 must be >= 0.6",
                        },
                        {
                            "name": "champion.roc_auc",
                            "passed": True,
                            "value": 0.81,
                            "reference": None,
                            "detail": "no current champion",
                        },
                    ],
                },
                "version": "4",
                "aliases_set": ["challenger", "champion"],
                "aliases": ["champion"],
            },
            data_quality={"docs": "/root/data_quality/x/evaluate/data_docs/index.html", "run_id": "run-eval"},
            seconds=3.0,
        ),
    ]


def test_summary_reports_tables_gate_aliases_timings_and_the_next_command():
    cfg = compose_config([])
    built = summary.build(cfg, results())
    assert built["tables"] == [
        {
            "stage": "extract",
            "table": "transactions",
            "name": "local.clv.clv_transactions_de",
            "version": 3,
            "rows": 1200,
        }
    ]
    assert built["stages"][0] == {
        "stage": "extract",
        "seconds": 2.0,
        "upstream": True,
        "run_id": None,
        "spark_jobs": 6,
        "spark_queries": 3,
    }
    assert built["gate"]["metrics"]["roc_auc"] == {
        "candidate": 0.81,
        "candidate_ci": [0.75, 0.86],
        "baseline": 0.74,
        "over_baseline": [0.07, 0.012, 0.131],
    }
    text = summary.render(built, "make ui")
    lines = text.splitlines()
    assert any(
        re.fullmatch(r"\s+extract\s+2\.0 s\s+6 \(3\)\s+-\s+run first: its output was missing", line) for line in lines
    )
    assert any(re.fullmatch(r"\s+evaluate\s+3\.0 s\s+-\s+run-eval", line) for line in lines)
    assert any(re.fullmatch(r"\s+local\.clv\.clv_transactions_de\s+3\s+1200", line) for line in lines)
    assert any(re.fullmatch(r"\s+roc_auc\s+0\.810 \[0\.750, 0\.860\]\s+0\.740\s+-", line) for line in lines), text
    assert any(re.fullmatch(r"\s+roc_auc\s+\+0\.070 \[\+0\.012, \+0\.131\]\s+-", line) for line in lines), text
    assert "gate (enabled): PASSED" in text and "ok   roc_auc=0.8100 must be >= 0.6" in text
    assert "registered local.clv.clv_repurchase_de version 4; set challenger, champion" in text
    assert "  - train: dropped feature month_sin: entirely null in training" in text
    assert "evaluate: /root/data_quality/x/evaluate/data_docs/index.html" in text
    assert lines[-1] == "next: make ui"


def test_monitoring_explains_drifting_features_the_rule_and_the_dates_it_counted():
    cfg = compose_config(["monitoring.psi_threshold=0.25", "monitoring.violations=2", "monitoring.windows=2"])
    metric = str(cfg.model.monitoring.performance_metric)
    days = [dt.date(2011, month, 9) for month in (7, 8, 9)]
    rows = []
    for day, (recency, spend, score) in zip(days, [(0.05, 0.02, 0.01), (1.05, 0.31, 0.02), (0.9, 0.4, 0.5)]):
        rows += [
            (day, "feature_psi", "recency", recency, 0.25, recency > 0.25, 100, "1"),
            (day, "feature_psi", "spend", spend, 0.25, spend > 0.25, 100, "1"),
            (day, "prediction_psi", "score", score, 0.25, score > 0.25, 100, "1"),
        ]
    rows.append((days[0], metric, "performance", 0.55, 0.6, True, 80, "1"))
    table = pd.DataFrame(
        rows, columns=["scoring_date", "metric", "subject", "value", "threshold", "violated", "rows", "model_version"]
    )
    explained, per_date = explain(table, "scoring_date", cfg)
    assert per_date == {days[0]: True, days[1]: True, days[2]: True}
    assert explained["retrain_required"] and explained["counted_dates"] == ["2011-08-09", "2011-09-09"]
    august = explained["dates"][1]
    assert august["drifting_features"] == [{"feature": "recency", "psi": 1.05}, {"feature": "spend", "psi": 0.31}]
    assert explained["dates"][0]["performance"] == 0.55 and explained["dates"][1]["performance"] is None
    assert "at least 2 of the last 2 scoring dates" in explained["rule"]
    text = "\n".join(summary._render_monitoring(explained))
    assert (
        "2011-08-09: VIOLATED; not yet labelled; score PSI 0.02; mean feature PSI 0.68; features with PSI > 0.25: recency 1.05, spend 0.31"
        in text
    )


# a fake clock that the test stages below advance: what each stage "takes" is exact
CLOCK = [0.0]


def _clock() -> float:
    return CLOCK[0]


def made_first(ctx) -> StageResult:
    CLOCK[0] += 2.0
    return StageResult("extract", {"transactions": 0}, {"transactions": 5})


def asked_for(ctx) -> StageResult:
    CLOCK[0] += 1.0
    ctx.make("transactions", "transactions missing", where="test")
    CLOCK[0] += 3.0
    return StageResult("features")


def test_a_stage_is_timed_without_the_producers_it_ran_first(monkeypatch, ctx):
    monkeypatch.setattr("mlops.runtime.time.perf_counter", _clock)
    with open_dict(ctx.cfg):
        ctx.cfg.pipeline.graph.extract.fn = f"{__name__}.made_first"
        ctx.cfg.pipeline.graph.features.fn = f"{__name__}.asked_for"
    result = ctx.run("features")
    assert [(r.stage, r.seconds, r.upstream) for r in ctx.results] == [("extract", 2.0, True), ("features", 4.0, False)]
    assert result is ctx.results[-1]


def test_a_failed_contract_leaves_its_report_in_a_failed_mlflow_run(tmp_path, spark):
    from mlflow import MlflowClient

    from mlops.errors import DataQualityError
    from mlops.runtime import RunContext
    from tests.conftest import local_config, mlflow_state_kept

    source = tmp_path / "lines.csv"
    source.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "536365,85123A,MUG,6,2010-12-01 08:26:00,2.55,12583,Germany\n"
        "536366,85123A,MUG,six,2010-12-02 08:26:00,2.55,12583,Germany\n"
    )
    cfg = local_config(tmp_path / "root", "use_case/source=csv", f"use_case.source.path={source}")
    ctx = RunContext.from_config(cfg, spark=spark)
    with mlflow_state_kept(), pytest.raises(DataQualityError) as error:
        ctx.run("extract")
    docs = Path(str(error.value.report))
    assert docs.is_file() and docs.parent.parent.name == "extract"
    (saved,) = (docs.parent.parent / "validations").glob("*.json")
    failed = [e for e in json.loads(saved.read_text())["expectations"] if not e["success"]]
    assert [e["kwargs"]["column"] for e in failed] == ["Quantity"]
    assert "six" in json.dumps(failed) and "12583" not in saved.read_text()  # the shown value, no customer
    with mlflow_state_kept():
        from mlops.registry import configure_mlflow

        experiment = configure_mlflow(cfg)
        (run,) = MlflowClient().search_runs([experiment], "tags.stage = 'extract'")
        assert run.info.status == "FAILED"
        assert "data_quality/validations" in {
            item.path for item in MlflowClient().list_artifacts(run.info.run_id, "data_quality")
        }
    assert ctx.results == [] and not ctx.tables.exists(ctx.table_name("transactions"))  # nothing written


def test_the_summary_of_a_promotion_says_which_alias_moved_from_where_to_where():
    moved = StageResult(
        "promote", details={"alias": "champion", "version": "3", "previous": "2", "challenger_removed": True}
    )
    text = summary.render(summary.build(compose_config([]), [moved]), None)
    assert "moved local.clv.clv_repurchase_de@champion: version 2 -> 3; its challenger alias removed" in text
    assert not text.splitlines()[-1].startswith("next:")  # no hint where there is nowhere to look


@pytest.mark.parametrize(
    ("present", "chosen"), [(["python3.11", "python3.12"], "python3.11"), (["python3.12"], "python3.12")]
)
def test_make_picks_python_3_11_or_else_3_12(tmp_path, present, chosen):
    import shutil

    folder = tmp_path / "bin"
    folder.mkdir()
    for name in present:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    make = shutil.which("make")
    shown = subprocess.run(
        [make, "-n", f"VENV={tmp_path / 'venv'}", "install"],
        cwd=REPO,
        env={"PATH": str(folder)},
        capture_output=True,
        text=True,
    )
    assert f"{folder / chosen} -m venv" in shown.stdout, shown.stdout + shown.stderr


def test_make_without_python_3_11_or_3_12_says_so(tmp_path):
    import shutil

    shown = subprocess.run(
        [shutil.which("make"), "-n", f"VENV={tmp_path / 'venv'}", "install"],
        cwd=REPO,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert shown.returncode != 0 and "neither python3.11 nor python3.12 is on PATH" in shown.stderr
