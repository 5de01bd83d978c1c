"""What a run leaves for the person who started it: the summary in every MLflow run, each stage's
Data Docs, scoring that never promotes on its own, and `make ui` serving the runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from integration_tests.conftest import copy_world, mlflow_state_kept
from mlops.cli import run_stage, run_stages
from mlops.errors import MissingInputError
from mlops.registry import alias_version, configure_mlflow, registered_model_name
from mlops.runtime import RunContext
from mlops.summary import SUMMARY_ARTIFACT
from tests.conftest import local_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline(de_pipelines):
    return de_pipelines["repurchase"]


def test_every_run_of_the_pipeline_holds_the_summary_and_each_data_stage_its_data_docs(pipeline):
    from mlflow import MlflowClient

    ctx, results = pipeline["ctx"], pipeline["results"]
    with mlflow_state_kept():
        configure_mlflow(ctx.cfg)
        client = MlflowClient()
        runs = {stage: result.run_id or result.data_quality.get("run_id") for stage, result in results.items()}
        assert all(runs.values()), runs  # every stage has a run: its own, or one for its data-quality report
        saved = [
            json.loads(Path(client.download_artifacts(run_id, SUMMARY_ARTIFACT)).read_text())
            for run_id in runs.values()
        ]
    assert all(summary == saved[0] for summary in saved)  # one summary, in every run
    summary = saved[0]
    assert [stage["stage"] for stage in summary["stages"]] == list(ctx.cfg.pipeline.stages)
    assert {table["table"] for table in summary["tables"]} >= {"transactions", "features", "predictions", "monitoring"}
    assert summary["gate"]["passed"] and summary["gate"]["version"] and "champion" in summary["gate"]["aliases_set"]
    assert summary["monitoring"]["rule"].startswith("retrain when")
    for stage in ("extract", "features", "split", "batch_inference", "monitor"):
        docs = Path(results[stage].data_quality["docs"])
        assert docs.is_file() and docs.name == "index.html"
        assert summary["data_quality"][stage] == str(docs)
        with mlflow_state_kept():
            configure_mlflow(ctx.cfg)
            logged = {item.path for item in MlflowClient().list_artifacts(runs[stage], "data_quality")}
        assert "data_quality/data_docs" in logged and "data_quality/validations" in logged, logged


def test_scoring_a_fresh_world_without_a_champion_stops_and_names_the_command(spark, tmp_path):
    cfg = local_config(tmp_path / "root")
    ctx = RunContext.from_config(cfg, spark=spark)
    with mlflow_state_kept(), pytest.raises(MissingInputError) as error:
        run_stages(["batch_inference"], cfg, ctx)
    assert "has no champion" in error.value.what
    assert "`python scripts/evaluate.py model=repurchase country=DE`" in error.value.fix
    assert "inference.evaluate_if_no_champion=true" in error.value.fix
    assert not ctx.tables.exists(ctx.table_name("transactions"))  # nothing upstream was run either
    assert ctx.results == []


def test_the_explicit_flag_runs_evaluate_first_and_the_summary_says_so(pipeline, tmp_path, capsys):
    root = copy_world(Path(pipeline["ctx"].cfg.env.storage_root), tmp_path / "root")
    cfg = local_config(root, "inference.evaluate_if_no_champion=true")
    with mlflow_state_kept():
        from mlflow import MlflowClient

        configure_mlflow(cfg)
        name = registered_model_name(cfg)
        MlflowClient().delete_registered_model_alias(name, "champion")
        run_stage("batch_inference", cfg)
        champion = alias_version(name, "champion")
    out = capsys.readouterr().out
    assert champion is not None
    assert any(line.split()[:1] == ["evaluate"] and "run first" in line for line in out.splitlines()), out
    assert f"evaluate ran before scoring: {name} had no champion and inference.evaluate_if_no_champion=true" in out
    assert f"it set champion to version {champion.version}" in out
    assert f"with version {champion.version}" in out and out.rstrip().splitlines()[-1].startswith("next: make ui")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_make_ui_serves_the_runs_on_loopback(pipeline):
    """`make ui` as the README gives it, on this world's store: the REST API finds the train run."""
    root = Path(pipeline["ctx"].cfg.env.storage_root)
    train_run = pipeline["results"]["train"].run_id
    port = free_port()
    venv = Path(sys.executable).parent.parent
    server = subprocess.Popen(
        # -o: use this interpreter's environment as it is, never (re)install it
        ["make", "-s", "-o", f"{venv}/.installed", "ui", f"VENV={venv}", f"STORE={root}", f"PORT={port}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?" + urllib.parse.urlencode({"run_id": train_run})
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    answer = json.load(response)
            except OSError:
                time.sleep(1)
        assert answer is not None, server.stderr.read().decode()[-2000:] if server.poll() is not None else "no answer"
        assert answer["run"]["info"]["run_id"] == train_run
        assert {tag["key"]: tag["value"] for tag in answer["run"]["data"]["tags"]}["stage"] == "train"
        # a small footprint: one uvicorn worker, none of MLflow's job-runner consumers
        listed = subprocess.run(["ps", "-o", "args=", "-s", str(server.pid)], capture_output=True, text=True).stdout
        assert listed.count("-m uvicorn") == 1 and "huey" not in listed, listed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
