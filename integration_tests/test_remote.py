"""The pipeline on remote Spark, selected by config only: a Spark Connect server (what Databricks
Connect and serverless jobs are), and a standalone cluster (what a job cluster is).

Each run goes through the real scripts in a fresh process, then its tables are compared with a
local run of the same stages on the same data: the same rows, keys, champion and predictions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration_tests.conftest import DE_PIPELINE_OVERRIDES, local_config
from integration_tests.servers import LOOPBACK, start_connect_server, start_standalone_cluster
from integration_tests.snapshot import snapshot
from mlops.runtime import RunContext

pytestmark = [pytest.mark.integration, pytest.mark.remote]

REPO = Path(__file__).resolve().parents[1]
MODELS = ("repurchase", "ltv_bucket")
SCORE_TOLERANCE = 1e-6


def run_python(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP=LOOPBACK)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    result.wall_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="module")
def local_runs(de_pipelines):
    """The reference: the shared local run of every stage (integration_tests/conftest.py), as a snapshot."""

    class Snapshots(dict):
        def __missing__(self, model: str) -> dict:
            run = de_pipelines[model]
            self[model] = {"snapshot": snapshot(run["ctx"]), "wall_seconds": run["wall_seconds"]}
            return self[model]

    return Snapshots()


def assert_same_outputs(remote: dict, local: dict) -> None:
    for key, table in local["tables"].items():
        assert table is not None, f"local run wrote no {key}"
        assert remote["tables"][key] == table, f"{key}: remote {remote['tables'][key]} != local {table}"
    assert remote["champion"] == local["champion"] == "1"
    assert len(remote["predictions"]) == len(local["predictions"]) > 0
    for mine, theirs in zip(remote["predictions"], local["predictions"]):
        assert mine[:3] == theirs[:3] and abs(mine[3] - theirs[3]) <= SCORE_TOLERANCE, (mine, theirs)


# -- Spark Connect ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    server = start_connect_server(tmp_path_factory.mktemp("connect-server"))
    try:
        yield server
    finally:
        server.stop()


def connect_overrides(server, storage_root: Path, model: str) -> list[str]:
    return [
        "env=connect",
        f"env.spark.remote=sc://{LOOPBACK}:{server.port}",
        f"env.storage_root={storage_root}",
        f"model={model}",
        *DE_PIPELINE_OVERRIDES,
    ]


def test_the_whole_pipeline_over_spark_connect_matches_the_local_run(connect_server, local_runs, tmp_path):
    model = MODELS[0]
    overrides = connect_overrides(connect_server, tmp_path, model)
    run = run_python(["scripts/run_pipeline.py", *overrides])
    print(
        f"{model} over Spark Connect: {run.wall_seconds:.1f} s "
        f"(local, in-process: {local_runs[model]['wall_seconds']:.1f} s)"
    )
    remote = json.loads(run_python(["-m", "integration_tests.snapshot", *overrides]).stdout.strip().splitlines()[-1])
    assert_same_outputs(remote, local_runs[model]["snapshot"])
    # the tables are the server's: a catalog view over versioned tables, not local files
    assert not (tmp_path / "warehouse").exists()


# -- Databricks Connect (the IDE path) ------------------------------------------------------------


@pytest.fixture(scope="module")
def dbconnect_python() -> Path:
    """Built on first use (or ahead of time by .ci/run); without a package index to install from,
    the test is skipped with pip's reason, never silently."""
    from integration_tests.dbconnect_env import EnvironmentUnavailable, ensure

    try:
        return ensure()
    except EnvironmentUnavailable as error:
        pytest.skip(f"cannot build the databricks-connect environment (no package index?): {error}")


def test_databricks_connect_runs_the_other_model_like_an_ide_session(
    dbconnect_python, connect_server, local_runs, tmp_path
):
    """env/spark=databricks with a Spark Connect URL: DatabricksSession.builder.remote(...),
    the exact code path of 'Databricks Connect from your IDE', against the same server.

    It runs the model the plain Spark Connect client did not, on that run's server and schema:
    `transactions` is per country, not per model, so the second model reads the first one's, as
    on a workspace (run alone, it runs extract itself as a missing upstream stage). Together the two
    tests cover both models over Connect and both clients, for one extract.
    """
    model = MODELS[1]
    overrides = [*connect_overrides(connect_server, tmp_path, model), "env/spark=databricks"]
    stages = "[features,split,train,evaluate,batch_inference,monitor]"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYSPARK_PYTHON", None)  # the server's Python workers are the server's concern
    started = time.perf_counter()
    result = subprocess.run(
        [str(dbconnect_python), "scripts/run_pipeline.py", *overrides, f"pipeline.stages={stages}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    wall = time.perf_counter() - started
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-6000:]}"
    assert "Spark session from Databricks Connect (remote URL)" in result.stderr
    print(f"{model} through Databricks Connect: {wall:.1f} s")
    inspect = subprocess.run(
        [str(dbconnect_python), "-m", "integration_tests.snapshot", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert inspect.returncode == 0, inspect.stderr[-4000:]
    remote = json.loads(inspect.stdout.strip().splitlines()[-1])
    assert_same_outputs(remote, local_runs[model]["snapshot"])


# -- Standalone cluster (a job cluster's shape: separate executor JVM and Python workers) ------------


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory):
    master, worker = start_standalone_cluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield f"spark://{LOOPBACK}:{master.port}"
    finally:
        worker.stop()
        master.stop()


def test_the_pipeline_on_a_standalone_cluster_matches_the_local_run(standalone_master, local_runs, spark, tmp_path):
    model = "repurchase"
    overrides = [
        f"env.spark.master={standalone_master}",
        f"env.storage_root={tmp_path}",
        f"model={model}",
        *DE_PIPELINE_OVERRIDES,
        "+env.spark.conf.spark.executor.memory=1g",
        "+env.spark.conf.spark.cores.max=2",
    ]
    run = run_python(["scripts/run_pipeline.py", *overrides])
    assert f"master {standalone_master}" in run.stderr
    print(
        f"{model} on a standalone cluster: {run.wall_seconds:.1f} s "
        f"(local, in-process: {local_runs[model]['wall_seconds']:.1f} s)"
    )
    # the tables are Delta files on the shared disk: read them back with this process's session
    ctx = RunContext.from_config(local_config(tmp_path, f"model={model}", *DE_PIPELINE_OVERRIDES), spark=spark)
    assert_same_outputs(snapshot(ctx), local_runs[model]["snapshot"])
