"""The bundle's jobs, rehearsed from the YAML in the jobs' own environment: the `test` target's nightly
chain for both models in Germany and France, the retrain branch of monitoring, a pair's training and
scoring jobs at the same time, and a job of a pair the target does not serve.

Everything runs the way Databricks would run it (integration_tests/rehearsal.py): references
resolved from databricks.yml and resources/*.yml, each spark_python_task's real script in a fresh
process with exactly its resolved parameters, run-job tasks followed, job queues honoured, runs the
monitor starts through the Jobs API run. The scripts run from the files the bundle syncs, outside
the checkout, with the Python of the serverless environment version and exactly the job
environment's dependencies around the wheel the bundle's artifact builds
(integration_tests/job_environment.py). The workspace is a Spark Connect server with a Hive
catalog on 127.0.0.1, an MLflow server of the jobs' MLflow version and a Jobs API stand-in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration_tests.rehearsal import (
    REPO,
    DeployedBundle,
    JobRun,
    Rehearsal,
    RehearsalError,
    StandIns,
    load_as_ci_deploys,
    load_bundle,
)
from integration_tests.servers import LOOPBACK, start_connect_server, start_mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.remote]

TARGET = "test"
NIGHTLY_JOB = "clv_nightly_test_job"
PAIRS = [(model, country) for country in ("DE", "FR") for model in ("ltv_bucket", "repurchase")]


def assert_succeeded(run: JobRun) -> None:
    if not run.succeeded:
        details = "\n\n".join(task.detail for _, task in run.failures())
        pytest.fail(f"{run.describe()}\n\n{details}")


@dataclass
class World:
    rehearsal: Rehearsal
    stand_ins: StandIns
    as_written: DeployedBundle
    remote: str

    def query(self, *statements: str) -> list[list[dict]]:
        """The rows of each SQL statement, run on the stand-in by a Spark Connect client of its own."""
        script = (
            "import json, sys; from pyspark.sql import SparkSession\n"
            "spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()\n"
            "print(json.dumps([[r.asDict() for r in spark.sql(q).collect()] for q in sys.argv[2:]], default=str))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, self.remote, *statements], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def tables(self) -> dict[str, int]:
        """table -> rows, for every table (a view over its current version) of the stand-in's schema."""
        views = [row["viewName"] for row in self.query("SHOW VIEWS IN spark_catalog.clv")[0]]
        counts = self.query(*(f"SELECT count(*) AS n FROM spark_catalog.clv.{view}" for view in views))
        return {view: rows[0]["n"] for view, rows in zip(views, counts)}

    def registry(self):
        from mlflow import MlflowClient

        uri = self.stand_ins.mlflow_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def world(tmp_path_factory, job_environment) -> World:
    root = tmp_path_factory.mktemp("rehearsal")
    # the workers run the UDFs (scoring) with the job environment's Python and packages, as serverless does
    server = start_connect_server(root / "server", python=job_environment.python)
    mlflow_server = None
    try:
        mlflow_server = start_mlflow_server(root / "mlflow", python=job_environment.python)
        remote = f"sc://{LOOPBACK}:{server.port}"
        stand_ins = StandIns(spark_remote=remote, mlflow_uri=mlflow_server.uri, mlflow_root=root / "mlflow")
        as_written = load_as_ci_deploys(TARGET, job_environment.root)
        assert as_written.warnings == [], as_written.warnings
        deployed = load_as_ci_deploys(TARGET, job_environment.root, variables=stand_ins.variables(as_written))
        with Rehearsal(deployed, stand_ins, root / "logs", python=str(job_environment.python)) as rehearsal:
            print(f"rehearsal of target test from {job_environment.root} with {job_environment.python};")
            print("replaced (target's value -> stand-in):")
            for key, (theirs, ours) in stand_ins.replaced(as_written).items():
                print(f"  {key}: {theirs!r} -> {ours!r}")
            yield World(rehearsal, stand_ins, as_written, remote)
    finally:
        if mlflow_server is not None:
            mlflow_server.stop()
        server.stop()


def test_the_rehearsal_says_what_stands_in_for_the_workspace(world):
    replaced = world.stand_ins.replaced(world.as_written)
    assert replaced["var.catalog"] == ("test", "spark_catalog")
    assert replaced["var.source_table"] == (
        "test.clv.clv_source_transactions",
        "spark_catalog.clv.clv_source_transactions",
    )
    assert replaced["env.mlflow.registry_uri"] == ("databricks-uc", world.stand_ins.mlflow_uri)
    # a server, as the workspace's is: the jobs' MLflow and the tests' may be different releases
    assert replaced["env.mlflow.tracking_uri"] == ("databricks", world.stand_ins.mlflow_uri)
    assert world.stand_ins.mlflow_uri.startswith(f"http://{LOOPBACK}:")
    assert replaced["env/tables"] == ("catalog", "versioned_catalog")
    assert replaced["env/feature_store"] == ("databricks", "local")
    # nothing else of the target's env is touched: its name, sample fraction and gate run as written
    assert set(replaced) == {
        "var.catalog",
        "var.source_table",
        "env.mlflow.tracking_uri",
        "env.mlflow.registry_uri",
        "env.mlflow.artifact_root",
        "env/tables",
        "env/feature_store",
        "spark session",
    }


def test_what_the_rehearsal_stands_in_for_is_installed_in_the_job_environment(job_environment):
    """The Feature Engineering client and the Unity Catalog registry are replaced here, so their
    packages are imported in the jobs' environment instead; the development environment, which has
    no Feature Engineering client, shows what a missing one looks like."""
    from integration_tests.job_environment import missing_imports

    assert missing_imports(job_environment.python) == []
    (missing,) = missing_imports(sys.executable)
    assert missing.startswith("databricks-feature-engineering: ") and "not installed" in missing


def test_the_nightly_chain_trains_scores_and_monitors_every_served_pair(world):
    started = time.perf_counter()
    run = world.rehearsal.run_job(NIGHTLY_JOB)
    print(f"{NIGHTLY_JOB} on {TARGET}: {time.perf_counter() - started:.1f} s\n{run.describe()}")
    assert_succeeded(run)
    assert run.tasks["load_sample"].state == "SUCCESS"
    for model, country in PAIRS:
        train, score, monitor = (run.tasks[f"{step}_{model}_{country}"].child for step in ("train", "score", "monitor"))
        assert list(train.tasks) == ["extract", "features", "split", "train", "evaluate"]
        assert list(score.tasks) == ["extract", "batch_inference"]
        # the pair's extract is a run of the one extract job, which runs once at a time
        assert train.tasks["extract"].child.job_key == score.tasks["extract"].child.job_key == "clv_extract_job"
        # the pair's own registered model and experiment reached every task, as the deployed names
        assert train.parameters["registered_model"] == f"spark_catalog.clv.clv_{model}_{country.lower()}"
        # in the bundle's root path, under the deploying principal's home, which the deploy creates
        assert train.parameters["experiment"] == f"{world.as_written.root_path}/clv_{model}_{country.lower()}"
        assert world.as_written.root_path.startswith(f"/Workspace/Users/{world.as_written.deployer}/")
        # the first night: no drift, so monitoring starts no training run
        assert list(monitor.tasks) == ["monitor"] and monitor.tasks["monitor"].started == []
        # the gate passed on the whole sample (env test: sample_fraction 1.0) and promoted a champion
        champion = world.registry().get_model_version_by_alias(
            f"spark_catalog.clv.clv_{model}_{country.lower()}", "champion"
        )
        assert str(champion.version) == "1"
    tables = world.tables()
    assert tables["clv_source_transactions"] == 31421
    for model, country in PAIRS:
        suffix = country.lower()
        assert tables[f"clv_transactions_{suffix}"] > 0
        for table in ("features", "labels", "train", "test", "scoring_features", "predictions", "monitoring"):
            assert tables[f"clv_{model}_{table}_{suffix}"] > 0, f"clv_{model}_{table}_{suffix}"
        assert tables[f"clv_{model}_predictions_{suffix}"] == tables[f"clv_{model}_scoring_features_{suffix}"]


def drift_source(world: World, day: str, price_factor: str) -> None:
    table = world.rehearsal.bundle.variables["source_table"]
    result = subprocess.run(
        [sys.executable, "-m", "integration_tests.drift_source", world.remote, table, "Germany", day, price_factor],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_monitoring_starts_the_training_job_when_drift_requires_it(world):
    """Upstream prices of Germany become 100x (a unit change): scoring dates after it drift. One
    drifted date is not enough under MLOps Stacks' rule (2 of the last 3 dates, the latest among
    them); after a second one, the monitor stage starts the training job through the Jobs API."""
    runs = []
    for day, factor in (("2011-12-16", "100"), ("2011-12-23", "1")):
        drift_source(world, day, factor)
        runs.append(world.rehearsal.run_job("clv_repurchase_de_scoring"))
        print(runs[-1].describe())
        assert_succeeded(runs[-1])
    first, second = (run.tasks["monitor"].child for run in runs)
    assert first.tasks["monitor"].started == []
    # the second monitor started the training job through the Jobs API, with the pair's parameters
    (request,) = [r for r in world.rehearsal.jobs_api.requests if r["idempotency_token"].endswith("-de-20111223")]
    assert request["job_id"] == int(world.rehearsal.job_id("clv_model_training_job"))
    (retrain,) = second.tasks["monitor"].started
    assert retrain.job_key == "clv_model_training_job" and retrain.parameters["model"] == "repurchase"
    assert retrain.succeeded and list(retrain.tasks) == ["extract", "features", "split", "train", "evaluate"]
    registry = world.registry()
    name = "spark_catalog.clv.clv_repurchase_de"
    assert {str(v.version) for v in registry.search_model_versions(f"name='{name}'")} == {"1", "2"}
    # the decision is recorded in the monitoring table, with the run the monitor started
    (decision,) = world.query(
        "SELECT CAST(scoring_date AS STRING) AS day, subject, violated FROM spark_catalog.clv.clv_repurchase_monitoring_de "
        "WHERE metric = 'retrain_required'"
    )[0]
    assert decision["day"] == "2011-12-23" and decision["violated"] and decision["subject"].isdigit()
    # what made the dates violate: the revenue features of the drifted dates, not of the first night's
    (psi,) = world.query(
        "SELECT CAST(scoring_date AS STRING) AS day, max(value) AS psi FROM "
        "spark_catalog.clv.clv_repurchase_monitoring_de WHERE metric = 'feature_psi' "
        "AND subject LIKE 'revenue%' GROUP BY scoring_date ORDER BY day"
    )
    by_day = {row["day"]: row["psi"] for row in psi}
    assert by_day["2011-12-09"] <= 0.25 < min(by_day["2011-12-16"], by_day["2011-12-23"]), by_day


def test_a_pair_the_target_does_not_serve_fails_with_the_sources_error(world):
    """GB is not served on test (no United Kingdom rows in its sample): its unscheduled job, run by
    hand, stops at extract with the contract's message and writes nothing."""
    run = world.rehearsal.run_job("clv_repurchase_gb_training")
    assert not run.succeeded
    extract = run.tasks["train"].child.tasks["extract"].child.tasks["extract"]  # the extract job's task
    assert extract.state == "FAILED" and "exited 3" in extract.detail
    assert "no transactions left for country United Kingdom" in extract.detail
    assert all(
        task.state == "UPSTREAM_FAILED" for key, task in run.tasks["train"].child.tasks.items() if key != "extract"
    )
    assert "clv_transactions_gb" not in world.tables()


def test_a_pairs_training_and_scoring_jobs_may_run_at_the_same_time(world):
    """A weekly training run and a daily scoring run of one pair overlap: both run the extract job
    first, which runs once at a time, so the two overwrites of the country's transactions take
    turns; both jobs succeed, and every table is whole afterwards."""
    before = world.tables()
    training, scoring = world.rehearsal.run_together(
        ("clv_ltv_bucket_fr_training", None), ("clv_ltv_bucket_fr_scoring", None)
    )
    print(training.describe(), scoring.describe(), sep="\n")
    assert_succeeded(training)
    assert_succeeded(scoring)
    extracts = sorted(
        (run for job in (training, scoring) for run in job.all_runs() if run.job_key == "clv_extract_job"),
        key=lambda run: run.began,
    )
    assert len(extracts) == 2 and extracts[0].ended <= extracts[1].began, "the two extracts overlapped"
    assert extracts[1].queued_seconds > 0, "the second extract did not wait for the first"
    # the jobs themselves overlapped: scoring's stages ran while training's did
    windows = [
        (min(t.began for t in run.tasks.values()), max(t.ended for t in run.tasks.values()))
        for run in (training.tasks["train"].child, scoring.tasks["batch_inference"].child)
    ]
    assert windows[0][0] < windows[1][1] and windows[1][0] < windows[0][1], windows
    after = world.tables()
    assert after["clv_transactions_fr"] == before["clv_transactions_fr"]  # the same source, extracted whole twice
    assert after["clv_ltv_bucket_predictions_fr"] == after["clv_ltv_bucket_scoring_features_fr"] > 0
    versions = world.registry().search_model_versions("name='spark_catalog.clv.clv_ltv_bucket_fr'")
    assert {str(v.version) for v in versions} == {"1", "2"}


# -- a broken bundle is caught, naming the file and the key ------------------------------------------


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """The bundle's files in a scratch folder, to break one of them (scripts/ and conf/ are linked)."""
    shutil.copy(REPO / "databricks.yml", tmp_path / "databricks.yml")
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    shutil.copytree(REPO / ".azure", tmp_path / ".azure")  # the deploy steps' environment
    for folder in ("scripts", "conf", "lib"):
        (tmp_path / folder).symlink_to(REPO / folder)
    return tmp_path


def break_training_job(root: Path, old: str, new: str) -> None:
    path = root / "resources" / "model-workflow-resource.yml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    "old, new, key, message",
    [
        (
            "env.schema=${var.schema}",
            "env.schema=${var.shema}",
            "resources.jobs.clv_model_training_job.tasks[1].spark_python_task.parameters[2]",
            "cannot resolve ${var.shema}: no variable 'shema' is declared",
        ),
        (
            "python_file: ../scripts/split.py",
            "python_file: ../scripts/splits.py",
            "resources.jobs.clv_model_training_job.tasks[2].spark_python_task.python_file",
            "python_file '../scripts/splits.py' does not exist",
        ),
        (
            "country={{job.parameters.country}}",
            "country={{job.parameters.land}}",
            "resources.jobs.clv_model_training_job.tasks[1]",
            "job clv_model_training_job has no parameter 'land'",
        ),
        (
            "job_id: ${resources.jobs.clv_extract_job.id}",
            "job_id: ${resources.jobs.clv_extract_jb.id}",
            "resources.jobs.clv_model_training_job.tasks[0].run_job_task.job_id",
            "no jobs resource named 'clv_extract_jb'",
        ),
    ],
    ids=["undeclared-variable", "missing-python-file", "undefined-job-parameter", "unknown-job"],
)
def test_a_reference_that_cannot_resolve_fails_at_deploy_naming_file_and_key(bundle_copy, old, new, key, message):
    break_training_job(bundle_copy, old, new)
    file = "resources/model-workflow-resource.yml"
    with pytest.raises(RehearsalError) as raised:
        load_as_ci_deploys(TARGET, bundle_copy)
    assert (raised.value.file, raised.value.key) == (file, key)
    assert message in raised.value.what


def test_a_parameter_the_script_refuses_fails_the_run_naming_file_and_key(bundle_copy, tmp_path):
    """A parameter that resolves but is wrong for the script: the task exits non-zero before any
    Spark work, the job fails, and the report names the task's file and key and the script's error."""
    path = bundle_copy / "resources" / "extract-workflow-resource.yml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("use_case/source=table", "use_case.source.knd=table", 1),
        encoding="utf-8",
    )
    deployed = load_as_ci_deploys(TARGET, bundle_copy, variables={"catalog": "spark_catalog"})
    stand_ins = StandIns(
        spark_remote=f"sc://{LOOPBACK}:1", mlflow_uri=f"http://{LOOPBACK}:1", mlflow_root=tmp_path / "mlflow"
    )
    with Rehearsal(deployed, stand_ins, tmp_path / "logs") as rehearsal:
        run = rehearsal.run_job("clv_model_training_job")
    assert not run.succeeded
    assert [task.state for task in run.tasks.values()] == ["FAILED"] + ["UPSTREAM_FAILED"] * 4
    ((job_key, failed),) = run.failures()
    assert job_key == "clv_extract_job"
    assert "resources/extract-workflow-resource.yml, resources.jobs.clv_extract_job.tasks[0]" in failed.detail
    assert "use_case.source.knd" in failed.detail and "exited 1" in failed.detail


# -- the rehearsal's own rules -------------------------------------------------------------------------


def test_conditions_compare_as_databricks_does():
    from integration_tests.rehearsal import Origin, _condition, _render

    assert _condition("c", {"op": "EQUAL_TO", "left": "12.0", "right": "12"}).outcome == "false"  # strings
    assert _condition("c", {"op": "GREATER_THAN_OR_EQUAL", "left": "12.0", "right": "12"}).outcome == "true"
    assert _condition("c", {"op": "LESS_THAN", "left": "abc", "right": "1"}).state == "FAILED"
    # a boolean task value takes part as "true" / "false"
    context = {"tasks": {"monitor": {"values": {"retrain_required": True}}}}
    left = _render("{{tasks.monitor.values.retrain_required}}", context, Origin("f", "k"))
    assert _condition("c", {"op": "EQUAL_TO", "left": left, "right": "true"}).outcome == "true"


def test_schedules_exist_only_where_a_pair_is_served_and_the_chain_only_on_test():
    deployed = {target: load_as_ci_deploys(target) for target in ("test", "staging", "prod")}
    deployed["dev"] = load_bundle(REPO, "dev", user="jdoe@example.com")
    for target in ("staging", "prod"):
        assert deployed[target].jobs["clv_repurchase_gb_scoring"]["schedule"]["pause_status"] == "UNPAUSED"
        assert NIGHTLY_JOB not in deployed[target].jobs
    assert "schedule" not in deployed["test"].jobs["clv_repurchase_gb_scoring"]  # GB: not served on test
    assert "schedule" not in deployed["test"].jobs["clv_repurchase_de_scoring"]  # DE: the nightly chain instead
    assert NIGHTLY_JOB in deployed["test"].jobs
    assert all("schedule" not in job for job in deployed["dev"].jobs.values())
    assert deployed["dev"].jobs["clv_model_training_job"]["name"] == "[dev jdoe] dev-clv-model-training"
