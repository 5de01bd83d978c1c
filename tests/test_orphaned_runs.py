"""A killed stage's MLflow run, left RUNNING, is marked FAILED by the next run of that stage, and only that one."""

from __future__ import annotations

import logging

import mlflow
import pytest
from mlflow import MlflowClient

from mlops.registry import configure_mlflow, fail_orphaned_runs


def test_only_this_stage_model_and_countrys_running_runs_are_failed(cfg, caplog):
    experiment_id = configure_mlflow(cfg)
    client = MlflowClient()

    def run(status: str = "RUNNING", **tags: str) -> str:
        created = client.create_run(
            experiment_id, tags={"stage": "evaluate", "model": "repurchase", "country": "DE", **tags}
        )
        if status != "RUNNING":
            client.set_terminated(created.info.run_id, status)
        return created.info.run_id

    orphan = run()
    others = {
        "finished": (run("FINISHED"), "FINISHED"),
        "another stage (may be live in another job)": (run(stage="monitor"), "RUNNING"),
        "another model": (run(model="ltv_bucket"), "RUNNING"),
        "another country": (run(country="FR"), "RUNNING"),
    }
    with (
        mlflow.start_run(tags={"stage": "evaluate", "model": "repurchase", "country": "DE"}) as live,
        caplog.at_level(logging.WARNING, logger="mlops.registry"),
    ):
        assert fail_orphaned_runs(cfg, "evaluate") == [orphan]

    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(live.info.run_id).info.status == "FINISHED", "this process's own run is not an orphan"
    for why, (run_id, status) in others.items():
        assert client.get_run(run_id).info.status == status, why
    assert f"marked 1 evaluate run(s) of repurchase DE FAILED: {orphan}" in caplog.text
    assert fail_orphaned_runs(cfg, "evaluate") == []


def test_it_needs_the_configured_experiment(cfg, monkeypatch):
    from mlops import errors, registry

    monkeypatch.setattr(registry, "_configured", None)
    with pytest.raises(errors.ConfigError, match="configure_mlflow"):
        fail_orphaned_runs(cfg, "train")
