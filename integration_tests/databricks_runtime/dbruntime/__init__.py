"""A stand-in for the Databricks runtime's `dbruntime` module, for bundle rehearsals only.

On a Databricks job, `from databricks.sdk.runtime import dbutils` (databricks-sdk) takes `dbutils`
from `dbruntime.UserNamespaceInitializer`; elsewhere it falls back to a remote implementation that
needs a workspace. The rehearsal (integration_tests/rehearsal.py) puts this folder on PYTHONPATH of
each task's process, so the project's own code path (mlops.task_values) runs unchanged and the
task values it sets land in the file named by AC_MLOPS_TASK_VALUES, where the rehearsal reads them
for `{{tasks.<task>.values.<key>}}`. Only what a task of ours calls is here: `jobs.taskValues.set`.
"""

from __future__ import annotations

import json
import os
from typing import Any


class _TaskValues:
    def set(self, key: str, value: Any) -> None:
        # Databricks stores task values as JSON (at most 48 KiB) and refuses what is not serialisable
        encoded = json.dumps({"key": key, "value": value})
        if len(encoded) > 48 * 1024:
            raise ValueError(f"task value {key!r} is larger than 48 KiB")
        with open(os.environ["AC_MLOPS_TASK_VALUES"], "a", encoding="utf-8") as handle:
            handle.write(encoded + "\n")


class _Jobs:
    taskValues = _TaskValues()


class _DbUtils:
    jobs = _Jobs()


class UserNamespaceInitializer:
    """What databricks.sdk.runtime asks the runtime for: the notebook/job namespace globals."""

    @classmethod
    def getOrCreate(cls) -> UserNamespaceInitializer:
        return cls()

    def get_namespace_globals(self) -> dict[str, Any]:
        return {"dbutils": _DbUtils()}
