"""Publishing a job task value (e.g. retrain_required) to Databricks, or to the log elsewhere."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def _job_dbutils() -> Any | None:
    # Only a job run on Databricks has a task to attach values to; the runtime sets this variable.
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        return None
    try:
        from databricks.sdk.runtime import dbutils
    except ImportError:
        return None
    return dbutils


def publish_task_value(key: str, value: Any, dbutils: Any | None = None) -> bool:
    """Set a task value a downstream `condition_task` can read; True if it reached Databricks."""
    dbutils = dbutils if dbutils is not None else _job_dbutils()
    log.info("task value %s=%s", key, value)
    if dbutils is None:
        return False
    dbutils.jobs.taskValues.set(key=key, value=value)
    return True
