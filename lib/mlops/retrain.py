"""Starting the model's training job when monitoring requires retraining, through the Databricks Jobs API.

Databricks documents task values for Python notebooks only: `dbutils.jobs.taskValues.set()` "can be
used only in notebooks with Python selected as the language" (https://docs.databricks.com/jobs/task-values.html).
From a `spark_python_task`, databricks-sdk's `dbutils` may be its local stand-in, whose `set` keeps
the value in the process (databricks/sdk/runtime/__init__.py), and a `condition_task` reading it
would see nothing. So the monitor stage starts the training job itself with what the Jobs API
documents: `jobs.run_now` (databricks-sdk `WorkspaceClient`, REST `POST /api/2.2/jobs/run-now`), on
the job id the bundle passes (`monitoring.retrain_job_id=${resources.jobs.<key>.id}`), with the
pair's job parameters, as the identity the monitoring job runs as (the deployer, who owns the
training job). Its `idempotency_token` names the pair and the latest scoring date, so a retried or
re-run monitor task on the same data starts no second run: Databricks returns the first one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlops.errors import ConfigError

log = logging.getLogger(__name__)

# the Jobs API's limit on an idempotency token
MAX_TOKEN_LENGTH = 64


@dataclass(frozen=True)
class RetrainOutcome:
    """What monitoring did about retraining: recorded in the monitoring table and the MLflow run."""

    required: bool
    job_id: int | None = None
    run_id: str | None = None  # the training job's run this monitor started (or Databricks returned for its token)
    note: str = "not required"


class JobsApiRetrain:
    """`jobs.run_now` of one job through databricks-sdk, with the SDK's own authentication (inside a
    job: the job's identity; elsewhere: a CLI profile or DATABRICKS_* variables)."""

    def __init__(self, job_id: int, client: Any | None = None) -> None:
        self.job_id, self._client = job_id, client

    @property
    def client(self) -> Any:
        if self._client is None:
            from databricks.sdk import WorkspaceClient

            self._client = WorkspaceClient()
        return self._client

    def start(self, job_parameters: dict[str, str], once: str) -> str:
        """Start one run; `once` is the idempotency token: a second call with it returns the first run."""
        waiter = self.client.jobs.run_now(job_id=self.job_id, job_parameters=job_parameters, idempotency_token=once)
        return str(waiter.run_id)


def retrain_token(cfg: DictConfig, latest_date: dt.date) -> str:
    """The run's idempotency token: one training run per pair and latest scoring date."""
    key = f"retrain-{cfg.use_case.name}-{cfg.model.name}-{cfg.country.suffix}-{latest_date:%Y%m%d}"
    return key[:MAX_TOKEN_LENGTH]


def start_retraining(
    cfg: DictConfig, required: bool, latest_date: dt.date, client: Any | None = None
) -> RetrainOutcome:
    """Start the training job when `required` and the config names it (monitoring.retrain_job_id).

    Inside a Databricks job a required retraining with no job to start is an error: the decision
    would otherwise be recorded and acted on by no one. Elsewhere (a laptop, a script by hand) the
    outcome says so and the run's summary names the command to run.
    """
    if not required:
        return RetrainOutcome(False)
    job_id = OmegaConf.select(cfg, "monitoring.retrain_job_id")
    if job_id is None:
        if "DATABRICKS_RUNTIME_VERSION" in os.environ:
            raise ConfigError(
                "monitoring requires retraining, but this job run has no training job to start",
                where="config key monitoring.retrain_job_id",
                fix="run monitoring through the bundle's monitoring job, which passes "
                "monitoring.retrain_job_id=${resources.jobs.<training job>.id}; the decision is recorded in the "
                "monitoring table and the MLflow run",
            )
        return RetrainOutcome(
            True,
            note=f"no training job to start here (monitoring.retrain_job_id is not set): retrain with "
            f"`python scripts/run_pipeline.py model={cfg.model.name} country={cfg.country.code}`",
        )
    from mlops.bundle import pair_job_parameters

    once = retrain_token(cfg, latest_date)
    run_id = JobsApiRetrain(int(job_id), client).start(pair_job_parameters(cfg), once)
    log.warning("retraining required: started run %s of training job %s (idempotency token %s)", run_id, job_id, once)
    return RetrainOutcome(True, int(job_id), run_id, note=f"started run {run_id} of the training job {job_id}")
