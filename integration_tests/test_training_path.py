"""The training path end to end on the bundled sample: in-process and through the real scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from sklearn.calibration import CalibratedClassifierCV
from sklearn.isotonic import IsotonicRegression

from integration_tests.conftest import DE_PIPELINE_OVERRIDES, copy_world, local_config, mlflow_state_kept
from mlops.registry import configure_mlflow, load_sklearn_model
from tests.timing import timed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
KEYS = ["customer_id", "snapshot_date"]


@pytest.fixture(scope="module")
def pipeline_run(de_pipelines):
    """The session's shared run of every stage for repurchase DE (integration_tests/conftest.py):
    all ~100 German customers, no sample."""
    run = de_pipelines["repurchase"]
    return run["ctx"], run["results"]


def test_every_table_is_a_delta_table_with_history(pipeline_run):
    ctx, results = pipeline_run
    for key in ("transactions", "features", "labels", "train", "test"):
        path = ctx.tables.path(ctx.table_name(key))
        table = DeltaTable(str(path))
        assert table.version() == 0 and table.history()[0]["operation"] == "WRITE"
        assert table.to_pyarrow_table().num_rows == ctx.read(key).count() > 0


def test_tables_have_their_keys_and_consistent_row_counts(pipeline_run):
    ctx, results = pipeline_run
    transactions, features, labels = ctx.read("transactions"), ctx.read("features"), ctx.read("labels")
    assert results["extract"].rows["source"] == 31421  # the bundled Germany + France sample
    assert transactions.where(F.col("country") != "Germany").count() == 0
    assert transactions.select("customer_id").distinct().count() == 107
    assert features.count() == features.select(*KEYS).distinct().count() == results["features"].rows["features"]
    # labels exist only where the horizon was observed, and only for customers in the feature table
    assert 0 < labels.count() < features.count()
    assert labels.join(features, KEYS, "left_anti").count() == 0
    assert labels.agg(F.max("snapshot_date")).first()[0] <= results["features"].details["observed_until"]
    train, test = ctx.read("train"), ctx.read("test")
    assert ctx.cfg.env.sample_fraction == 1.0
    assert train.count() + test.count() == labels.count()  # every customer
    assert train.select("customer_id").intersect(test.select("customer_id")).count() == 0


def test_the_run_has_a_model_metrics_and_lineage(pipeline_run):
    ctx, results = pipeline_run
    configure_mlflow(ctx.cfg)  # MLflow's tracking URI is process-wide: other modules on this worker move it
    run = mlflow.get_run(results["train"].run_id)
    assert run.data.metrics["test_roc_auc"] > 0.6
    assert {"test_pr_auc", "test_brier", "test_lift_at_10"} <= set(run.data.metrics)
    assert run.data.tags["input.train.version"] == "0"
    assert run.data.tags["input.train.table"] == "local.clv.clv_repurchase_train_de"
    assert len(run.data.tags["git_commit"]) >= 7
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "config")}
    assert "config/resolved_config.yaml" in artifacts
    model = load_sklearn_model(results["train"].details["model_uri"])
    sample = ctx.read("test").limit(20).toPandas()[results["train"].details["features"]].astype("float64")
    probabilities = model.predict_proba(sample)
    assert probabilities.shape == (len(sample), 2) and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_calibrated_run_logs_the_calibrator_fitted_on_the_latest_training_snapshot(pipeline_run, tmp_path, spark):
    """model.calibration.method=isotonic, retrained on a private copy of the shared world's tables."""
    from mlops.runtime import RunContext
    from mlops.stages.train import train

    ctx, results = pipeline_run
    root = copy_world(Path(ctx.cfg.env.storage_root), tmp_path / "world")
    with mlflow_state_kept():
        cfg = local_config(root, "model=repurchase", *DE_PIPELINE_OVERRIDES, "model.calibration.method=isotonic")
        calibrated = RunContext.from_config(cfg, spark=spark)
        result = train(calibrated)
        run = mlflow.get_run(result.run_id)
        model = load_sklearn_model(result.details["model_uri"])
    train_table = calibrated.read("train")
    latest = train_table.agg(F.max("snapshot_date")).first()[0]
    assert train_table.select("snapshot_date").distinct().count() > 1
    calibration_rows, rows = train_table.where(F.col("snapshot_date") == latest).count(), train_table.count()
    assert run.data.params["calibration.method"] == "isotonic"
    assert run.data.params["calibration.snapshots"] == "1"
    assert run.data.params["calibration_rows"] == str(calibration_rows)
    assert run.data.params["train_rows"] == str(rows)
    assert "test_roc_auc" in run.data.metrics
    assert (
        f"calibrated (isotonic) on {calibration_rows} rows of snapshot(s) {latest}; "
        f"estimator fitted on {rows - calibration_rows} rows"
    ) in result.notes
    # what evaluate and batch inference load: the calibrated model, over the frozen estimator
    assert isinstance(model, CalibratedClassifierCV) and list(model.classes_) == [0, 1]
    [pair] = model.calibrated_classifiers_
    assert pair.method == "isotonic" and isinstance(pair.calibrators[0], IsotonicRegression)
    sample = ctx.read("test").limit(20).toPandas()[result.details["features"]].astype("float64")
    probabilities = model.predict_proba(sample)
    assert probabilities.shape == (len(sample), 2) and ((probabilities >= 0) & (probabilities <= 1)).all()
    # the shared world's own run is uncalibrated, and says so
    configure_mlflow(ctx.cfg)
    assert mlflow.get_run(results["train"].run_id).data.params["calibration.method"] == "none"

    # calibrated on the latest 12 snapshots, the estimator keeps the first ten, which are less than a
    # year into the data: last year's seasonal features are empty there, and are dropped, as features
    # the estimator cannot learn from (HistGradientBoosting would fail on an all-null column)
    with mlflow_state_kept():
        cfg = local_config(
            root,
            "model=repurchase",
            *DE_PIPELINE_OVERRIDES,
            "model.calibration.method=sigmoid",
            "model.calibration.snapshots=12",
        )
        early = train(RunContext.from_config(cfg, spark=spark))
    seasonal = [column for column in early.details["dropped_features"] if "last_year" in column]
    assert seasonal and all(
        early.details["dropped_features"][column].endswith("(the estimator's snapshots, before calibration)")
        for column in seasonal
    )
    assert not set(seasonal) & set(early.details["features"])


@timed("a script in a process of its own")
def run_script(name: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_train_script_on_a_fresh_root_runs_every_missing_stage(tmp_path):
    root = tmp_path / "root"
    result = run_script("train.py", "model=repurchase", "country=FR", f"env.storage_root={root}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("split", "features", "extract"):
        assert f"running stage '{stage}' first" in result.stderr
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["clv_repurchase_fr"], output_format="list")
    # the training run, and one run per data stage holding its data-quality report
    by_stage = {run.data.tags["stage"]: run for run in runs}
    assert len(runs) == 4 and set(by_stage) == {"extract", "features", "split", "train"}
    assert all(run.info.status == "FINISHED" for run in runs) and "test_roc_auc" in by_stage["train"].data.metrics
    # the closing summary: the stages run first, marked, and where to look next
    for stage in ("extract", "features", "split"):
        assert any(line.split()[:1] == [stage] and "run first" in line for line in result.stdout.splitlines())
    lines = result.stdout.rstrip().splitlines()
    assert any(line.split()[:1] == ["train"] and "run first" not in line for line in lines)
    assert lines[-1].startswith(f"next: make ui STORE={root}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # nothing written into the cwd
