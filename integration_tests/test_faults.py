"""Faults: a stage killed in the middle of a table overwrite, between the writes of a multi-table
unit, or while it logs to MLflow; two runs of the same stage at once; and the run after each. The
last good state must stay readable, nothing may interleave, and what a kill leaves half done is
undone (tables) or closed (MLflow runs) by the next run."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from integration_tests.conftest import DE_PIPELINE_OVERRIDES, copy_world, local_config, mlflow_state_kept
from integration_tests.faults import kill_at
from mlops.cli import run_stage, run_stages
from mlops.journal import open_units, recover_unfinished_writes
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]

# Runs a stage script with the Delta write slowed down: the rows go to deltalake in small batches,
# half a second apart, and a marker file appears once the write has started. Killing the process
# then lands in the middle of an overwrite, before its commit, every time.
SLOW_WRITER = """
import pathlib, runpy, sys, time
import pyarrow as pa
from mlops import tables

marker = pathlib.Path(sys.argv.pop(1))
original = tables.DeltaPathTableStore.overwrite_arrow

def slow_overwrite(self, name, data):
    table = data if isinstance(data, pa.Table) else data.read_all()
    def batches():
        for number, batch in enumerate(table.to_batches(max_chunksize=max(1, table.num_rows // 40))):
            yield batch
            if number == 1:
                marker.write_text("writing")
            time.sleep(0.5)
    return original(self, name, pa.RecordBatchReader.from_batches(table.schema, batches()))

tables.DeltaPathTableStore.overwrite_arrow = slow_overwrite
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def small_source(tmp_path_factory) -> list[str]:
    """Overrides for a small German source: the faults are about writes, not about data volume."""
    from integration_tests.test_bad_input import _base

    path = tmp_path_factory.mktemp("source") / "germany.csv.gz"
    _base().to_csv(path, index=False, compression="gzip")
    return ["country=DE", "use_case/source=csv", f"use_case.source.path={path}"]


def script(name: str, *overrides: str, cwd: Path) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / name), *overrides]


@pytest.fixture
def extracted(tmp_path, spark, small_source):
    """A root whose transactions table has one good version (0), and the overrides that made it."""
    root = tmp_path / "root"
    overrides = [f"env.storage_root={root}", *small_source]
    cfg = local_config(root, *small_source)
    ctx = RunContext.from_config(cfg, spark=spark)
    run_stages(["extract"], cfg, ctx)
    path = ctx.tables.path(ctx.table_name("transactions"))
    return root, path, ctx.read("transactions").count(), overrides


def test_kill_9_in_the_middle_of_an_overwrite_leaves_the_previous_version(extracted, tmp_path, spark):
    root, path, rows, overrides = extracted
    marker = tmp_path / "writing"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(marker), str(REPO / "scripts" / "extract.py"), *overrides],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, f"the stage ended before its write:\n{process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    table = DeltaTable(str(path))
    assert table.version() == 0, "a killed write must not commit"
    assert spark.read.parquet(*table.file_uris()).count() == rows

    # the re-run (in this process: the point is the table, not the process)
    cfg = local_config(root, *overrides[1:])
    run_stages(["extract"], cfg, RunContext.from_config(cfg, spark=spark))
    table = DeltaTable(str(path))
    assert table.version() == 1
    assert spark.read.parquet(*table.file_uris()).count() == rows


def test_two_runs_of_the_same_stages_take_turns_and_never_interleave(extracted, tmp_path):
    root, _, _, overrides = extracted
    # features: two tables per run (features, labels), so interleaving could show; it reads the fixture's transactions
    command = script("run_pipeline.py", *overrides, "pipeline.stages=[features]", cwd=tmp_path)
    first = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    second = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    errors = [process.communicate(timeout=900)[1] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], "\n".join(e[-2000:] for e in errors)
    assert sum("is writing; waiting for" in e for e in errors) == 1
    # a calm log: Spark abbreviates the features plan it prints without a warning (spark.sql.debug.maxToStringFields)
    assert not [e for e in errors if "Truncated the string representation of a plan" in e]

    warehouse = root / "warehouse" / "local" / "clv"
    stamp = {}
    for table in ("clv_repurchase_features_de", "clv_repurchase_labels_de"):
        for entry in DeltaTable(str(warehouse / table)).history():
            stamp[table, entry["version"]] = entry["timestamp"]
    # each run writes one version of both tables, the first run's both before the second run's
    first_run = [stamp["clv_repurchase_features_de", 0], stamp["clv_repurchase_labels_de", 0]]
    second_run = [stamp["clv_repurchase_features_de", 1], stamp["clv_repurchase_labels_de", 1]]
    assert max(first_run) <= min(second_run), "the two runs' writes interleaved"
    assert len(stamp) == 2 + 2


def test_two_different_stages_of_one_model_and_country_take_turns_too(extracted, tmp_path):
    """extract (rewrites transactions) and features (reads them, writes features and labels) at
    once: the lock is per use case and country, not per stage, so one waits and no write of one
    falls between the other's read and writes."""
    root, _, _, overrides = extracted
    commands = [
        script("extract.py", *overrides, cwd=tmp_path),
        script("run_pipeline.py", *overrides, "pipeline.stages=[features]", cwd=tmp_path),
    ]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for command in commands
    ]
    errors = [process.communicate(timeout=900)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(e[-2000:] for e in errors)
    assert sum("is writing; waiting for" in e for e in errors) == 1

    warehouse = root / "warehouse" / "local" / "clv"
    extract_commit = DeltaTable(str(warehouse / "clv_transactions_de")).history(1)[0]["timestamp"]
    feature_commits = [
        DeltaTable(str(warehouse / table)).history(1)[0]["timestamp"]
        for table in ("clv_repurchase_features_de", "clv_repurchase_labels_de")
    ]
    assert DeltaTable(str(warehouse / "clv_transactions_de")).version() == 1
    # the lock is taken before a stage reads anything: the run that waited wrote after all the other wrote
    if "is writing; waiting for" in errors[0]:
        assert extract_commit >= max(feature_commits)
    else:
        assert min(feature_commits) >= extract_commit


def test_a_run_that_cannot_get_the_lock_in_time_exits_8_without_starting(extracted, tmp_path):
    root, path, _, overrides = extracted
    lock = root / "locks" / "clv_de.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another run is writing
        result = subprocess.run(
            script("extract.py", *overrides, "env.lock_timeout_seconds=1", cwd=tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 8, result.stderr[-3000:]
    assert "another run of clv DE has held the lock" in result.stderr and "env.lock_timeout_seconds" in result.stderr
    assert DeltaTable(str(path)).version() == 0


# -- a kill between the writes of a unit, or while a run logs to MLflow ---------------------------


def delta_rows(spark, path: Path, version: int | None = None):
    return spark.read.parquet(*DeltaTable(str(path), version=version).file_uris())


@pytest.fixture
def mlflow_state():
    """This module points MLflow at private worlds; the modules after it find it as it was."""
    with mlflow_state_kept():
        yield


def test_kill_9_between_the_features_and_labels_writes_is_undone_by_the_next_run(extracted, tmp_path, spark, caplog):
    root, _, _, overrides = extracted
    cfg = local_config(root, *overrides[1:])
    # version 0 of both, the last unit written whole: every other month, so the killed run's
    # monthly snapshots are other rows
    bimonthly = local_config(root, *overrides[1:], "use_case.snapshots.cadence_months=2")
    run_stages(["features"], bimonthly, RunContext.from_config(bimonthly, spark=spark))
    ctx = RunContext.from_config(cfg, spark=spark)
    features, labels = (ctx.tables.path(ctx.table_name(key)) for key in ("features", "labels"))

    kill_at("commit:clv_repurchase_features_de", "features.py", overrides, tmp_path)
    assert (DeltaTable(str(features)).version(), DeltaTable(str(labels)).version()) == (1, 0), (
        "the kill must land between the two writes"
    )
    assert delta_rows(spark, features).count() > delta_rows(spark, features, 0).count()
    [unit] = open_units(cfg)
    assert unit.stage == "features" and unit.tables[0].written is None  # committed, not yet recorded

    # the next run, of any stage, as a job would start it
    result = subprocess.run(
        script("extract.py", *overrides, cwd=tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" in result.stderr and "found a features run of repurchase" in result.stderr
    assert (
        "restored local.clv.clv_repurchase_features_de from version 1 back to version 0 (now version 2)"
        in result.stderr
    )
    assert DeltaTable(str(features)).version() == 2 and DeltaTable(str(labels)).version() == 0
    assertDataFrameEqual(delta_rows(spark, features), delta_rows(spark, features, 0))

    with caplog.at_level(logging.WARNING, logger="mlops.journal"):
        run_stages(["extract"], cfg, RunContext.from_config(cfg, spark=spark))
    assert "found a" not in caplog.text, "the unit was undone twice"
    assert DeltaTable(str(features)).version() == 2 and open_units(cfg) == []


@pytest.mark.parametrize(
    "point, foreign, unit_wrote",
    [
        ("begun:features", "features", None),
        ("commit:clv_repurchase_features_de", "features", 1),
        ("commit:clv_repurchase_labels_de", "labels", 1),
    ],
    ids=["killed once begun", "killed after the features commit", "killed after the labels commit"],
)
def test_kill_9_then_another_writer_the_next_run_keeps_that_version_and_exits_11(
    extracted, tmp_path, spark, caplog, point, foreign, unit_wrote
):
    """A features run killed at `point`, then a version of one of its tables written by someone else:
    the next run must not take that version for the killed run's. It restores nothing, names each
    table's versions and exits 11 until a person has dropped the record; then runs go on."""
    root, _, _, overrides = extracted
    cfg = local_config(root, *overrides[1:])
    bimonthly = local_config(root, *overrides[1:], "use_case.snapshots.cadence_months=2")
    run_stages(["features"], bimonthly, RunContext.from_config(bimonthly, spark=spark))  # version 0 of both
    ctx = RunContext.from_config(cfg, spark=spark)
    names = {key: ctx.table_name(key) for key in ("features", "labels")}

    def versions() -> dict[str, int]:
        return {key: DeltaTable(str(ctx.tables.path(name))).version() for key, name in names.items()}

    landed = {  # the versions each kill point leaves: the unit's commits up to it
        "begun:features": {"features": 0, "labels": 0},
        "commit:clv_repurchase_features_de": {"features": 1, "labels": 0},
        "commit:clv_repurchase_labels_de": {"features": 1, "labels": 1},
    }[point]
    kill_at(point, "features.py", overrides, tmp_path)
    assert versions() == landed, "the kill must land at its point"
    [unit] = open_units(cfg)
    theirs = ctx.tables.overwrite(names[foreign], ctx.read(foreign).limit(7))  # another writer, after the kill
    kept = versions()

    # the next run, of any stage, through the scripts' wrapper
    with caplog.at_level(logging.ERROR, logger="mlops.cli"), pytest.raises(SystemExit) as exited:
        run_stage("extract", cfg)
    assert exited.value.code == 11
    wrote = "it wrote none" if unit_wrote is None else f"it wrote version {unit_wrote}"
    assert (
        f"{names[foreign]} is at version {theirs}, which the unit did not write ({wrote}; before it: version 0)"
        in caplog.text
    )
    assert "nothing was restored" in caplog.text and f"where: {unit.where}" in caplog.text
    if foreign == "labels":  # the killed run's own features version is kept too, and named as its own
        assert f"{names['features']} is at version 1, which the unit wrote (before it: version 0)" in caplog.text
    assert versions() == kept and ctx.read(foreign).count() == 7

    # the person keeps the tables as they are and drops the record, as the fix says: runs go on
    assert f"delete {unit.where}" in caplog.text
    Path(unit.where).unlink()
    assert recover_unfinished_writes(ctx) == []
    assert versions() == kept and ctx.read(foreign).count() == 7


@pytest.fixture(scope="module")
def world(de_pipelines) -> Path:
    """The session's complete DE repurchase world (every table, a champion); tests copy it, never change it."""
    return Path(de_pipelines["repurchase"]["ctx"].cfg.env.storage_root)


def test_kill_9_between_the_scoring_features_and_predictions_writes_is_undone(
    world, tmp_path, spark, caplog, mlflow_state
):
    root = copy_world(world, tmp_path / "world")
    cfg = local_config(root, *DE_PIPELINE_OVERRIDES)
    ctx = RunContext.from_config(cfg, spark=spark)
    scoring_features, predictions = (
        ctx.tables.path(ctx.table_name(key)) for key in ("scoring_features", "predictions")
    )
    before = DeltaTable(str(scoring_features)).version(), DeltaTable(str(predictions)).version()
    latest = ctx.read("predictions").agg(F.max("scoring_date").alias("latest")).first()["latest"]
    new_date = latest - dt.timedelta(days=1)  # not scored yet: the killed run adds rows

    kill_at(
        "recorded:scoring_features",
        "batch_inference.py",
        [f"env.storage_root={root}", "country=DE", f"inference.date={new_date}"],
        tmp_path,
    )
    assert (DeltaTable(str(scoring_features)).version(), DeltaTable(str(predictions)).version()) == (
        before[0] + 1,
        before[1],
    ), "the kill must land between the two writes"
    assert delta_rows(spark, scoring_features).where(F.col("scoring_date") == new_date).count() > 0
    [unit] = open_units(cfg)
    assert unit.stage == "batch_inference" and unit.tables[0].written == before[0] + 1

    with caplog.at_level(logging.WARNING, logger="mlops.journal"):
        run_stages(["extract"], cfg, ctx)
    assert (
        f"restored local.clv.clv_repurchase_scoring_features_de from version {before[0] + 1} back to "
        f"version {before[0]} (now version {before[0] + 2})"
    ) in caplog.text
    assert "predictions_de from" not in caplog.text  # never written: left alone
    assert DeltaTable(str(predictions)).version() == before[1]
    assertDataFrameEqual(delta_rows(spark, scoring_features), delta_rows(spark, scoring_features, before[0]))
    assert delta_rows(spark, scoring_features).where(F.col("scoring_date") == new_date).count() == 0
    assert recover_unfinished_writes(ctx) == [] and DeltaTable(str(scoring_features)).version() == before[0] + 2


def test_kill_9_while_evaluate_logs_leaves_a_run_that_the_next_evaluate_marks_failed(
    world, tmp_path, spark, caplog, mlflow_state
):
    from mlflow import MlflowClient

    from mlops.registry import alias_version, configure_mlflow, registered_model_name

    root = copy_world(world, tmp_path / "world")
    cfg = local_config(root, *DE_PIPELINE_OVERRIDES)
    experiment_id = configure_mlflow(cfg)
    name, client = registered_model_name(cfg), MlflowClient()

    def aliases() -> dict[str, str | None]:
        return {alias: getattr(alias_version(name, alias), "version", None) for alias in ("champion", "challenger")}

    aliases_before = aliases()
    kill_at("mlflow:log_dict", "evaluate.py", [f"env.storage_root={root}", "country=DE"], tmp_path)
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    assert [run.data.tags["stage"] for run in running] == ["evaluate"]
    killed = running[0].info.run_id
    assert aliases() == aliases_before, "the killed run moved an alias"

    with caplog.at_level(logging.WARNING, logger="mlops.registry"):
        run_stages(["evaluate"], cfg, RunContext.from_config(cfg, spark=spark))
    assert client.get_run(killed).info.status == "FAILED"
    assert f"marked 1 evaluate run(s) of repurchase DE FAILED: {killed}" in caplog.text
    assert client.search_runs([experiment_id], "attributes.status = 'RUNNING'") == []
