"""Monitoring starts retraining through the Databricks Jobs API (mlops.retrain): the real databricks-sdk
client, over HTTP, against the bundle rehearsal's stand-in of the Jobs API on 127.0.0.1
(integration_tests/rehearsal.py, JobsApiStandIn), which answers `run-now` as the API documents."""

from __future__ import annotations

import datetime as dt

import pytest
from databricks.sdk import WorkspaceClient

from integration_tests.rehearsal import JobsApiStandIn, load_as_ci_deploys
from mlops.config import compose_config
from mlops.errors import ConfigError
from mlops.retrain import MAX_TOKEN_LENGTH, retrain_token, start_retraining

LATEST = dt.date(2011, 12, 9)


@pytest.fixture(scope="module")
def jobs_api():
    deployed = load_as_ci_deploys("test")
    stand_in = JobsApiStandIn(deployed, iter(range(5000, 6000)))
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def client(jobs_api, monkeypatch):
    for name in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    jobs_api.take()  # nothing left over from another test
    return WorkspaceClient(host=jobs_api.host, token=JobsApiStandIn.TOKEN)


def training_job_id(jobs_api) -> int:
    return int(next(job_id for job_id, key in jobs_api.bundle.job_ids.items() if key == "clv_model_training_job"))


def monitor_config(job_id: int | None, *overrides: str):
    retrain = [] if job_id is None else [f"monitoring.retrain_job_id={job_id}"]
    return compose_config(["env=test", "model=ltv_bucket", "country=FR", *retrain, *overrides])


def test_nothing_is_started_when_retraining_is_not_required(jobs_api, client):
    outcome = start_retraining(monitor_config(training_job_id(jobs_api)), False, LATEST, client=client)
    assert (outcome.required, outcome.run_id) == (False, None)
    assert jobs_api.take() == []


def test_a_required_retraining_starts_the_training_job_with_the_pairs_parameters(jobs_api, client):
    job_id = training_job_id(jobs_api)
    cfg = monitor_config(job_id)
    outcome = start_retraining(cfg, True, LATEST, client=client)
    assert outcome.required and outcome.job_id == job_id and outcome.run_id is not None
    assert f"started run {outcome.run_id}" in outcome.note
    ((job_key, parameters),) = jobs_api.take()
    assert job_key == "clv_model_training_job"
    assert parameters == {
        "model": "ltv_bucket",
        "country": "FR",
        "registered_model": str(cfg.use_case.registered_model),
        "experiment": str(cfg.use_case.experiment),
    }
    assert jobs_api.requests[-1]["idempotency_token"] == retrain_token(cfg, LATEST)


def test_a_retried_monitor_on_the_same_data_starts_no_second_run(jobs_api, client):
    cfg = monitor_config(training_job_id(jobs_api), "model=repurchase")
    first = start_retraining(cfg, True, LATEST, client=client)
    again = start_retraining(cfg, True, LATEST, client=client)
    assert again.run_id == first.run_id and len(jobs_api.take()) == 1
    # the next scoring date is another decision: another run
    later = start_retraining(cfg, True, LATEST + dt.timedelta(days=7), client=client)
    assert later.run_id != first.run_id and len(jobs_api.take()) == 1


def test_a_job_id_the_workspace_does_not_know_fails_with_the_apis_error(jobs_api, client):
    from databricks.sdk.errors import InvalidParameterValue

    with pytest.raises(InvalidParameterValue, match="Job 999 does not exist"):
        start_retraining(monitor_config(999), True, LATEST, client=client)


def test_without_a_job_to_start_a_laptop_run_says_what_to_run(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    outcome = start_retraining(compose_config(["model=repurchase", "country=DE"]), True, LATEST)
    assert outcome.required and outcome.run_id is None
    assert "python scripts/run_pipeline.py model=repurchase country=DE" in outcome.note


def test_without_a_job_to_start_a_databricks_job_run_fails_clearly(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.5")
    with pytest.raises(ConfigError) as raised:
        start_retraining(monitor_config(None), True, LATEST)
    assert raised.value.where == "config key monitoring.retrain_job_id"
    assert "no training job to start" in raised.value.what


def test_the_idempotency_token_fits_the_api_and_names_pair_and_date():
    cfg = compose_config(["model=ltv_bucket", "country=FR"])
    token = retrain_token(cfg, LATEST)
    assert token == "retrain-clv-ltv_bucket-fr-20111209" and len(token) <= MAX_TOKEN_LENGTH


def test_the_monitoring_job_passes_the_training_jobs_id():
    from integration_tests.rehearsal import job_parameters, task_arguments

    deployed = load_as_ci_deploys("test")
    parameters = job_parameters(deployed, "clv_monitoring_job")
    arguments = task_arguments(deployed, "clv_monitoring_job", "monitor", parameters)
    job_id = next(job_id for job_id, key in deployed.job_ids.items() if key == "clv_model_training_job")
    assert f"monitoring.retrain_job_id={job_id}" in arguments
    assert [task["task_key"] for task in deployed.jobs["clv_monitoring_job"]["tasks"]] == ["monitor"]
