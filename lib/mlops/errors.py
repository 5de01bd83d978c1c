"""Pipeline errors that carry what went wrong, where, and how to fix it, plus an exit code."""

from __future__ import annotations

import errno


class PipelineError(Exception):
    """An expected failure: reported in one clear message, never as a traceback."""

    exit_code = 10

    def __init__(self, what: str, *, where: str = "", fix: str = "") -> None:
        self.what, self.where, self.fix = what, where, fix
        # the failed stage's data-quality report (Data Docs index), when it validated anything
        self.report: str | None = None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"where: {self.where}")
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return " | ".join(parts)


class ConfigError(PipelineError):
    exit_code = 2


class DataQualityError(PipelineError):
    """A table broke its data contract; nothing was written."""

    exit_code = 3

    def __init__(self, what: str, *, where: str = "", fix: str = "", failures: list[dict] | None = None) -> None:
        self.failures = failures or []
        super().__init__(what, where=where, fix=fix)


class MissingInputError(PipelineError):
    exit_code = 4


class SourceError(PipelineError):
    exit_code = 5


class TrainingDataError(PipelineError):
    exit_code = 6


class GateRejectedError(PipelineError):
    """The candidate failed the deployment gate; nothing was registered, every alias is unchanged."""

    exit_code = 7


class ConcurrentRunError(PipelineError):
    """Another run of the same use case and country held the lock for too long; nothing was done."""

    exit_code = 8


class StorageError(PipelineError):
    """The storage under the pipeline failed (full, read-only, a damaged table log or tracking
    database); the previous table versions and aliases are as they were."""

    exit_code = 9


class MachineError(PipelineError):
    """The machine lacks what the run needs (e.g. a Java runtime for local Spark); nothing was done."""

    exit_code = 12


class SparkUnreachableError(PipelineError):
    """The Spark world (a Spark Connect server, Databricks Connect's compute) did not answer within
    env.spark.connect_timeout_seconds; nothing was done, and the process is free to end."""

    exit_code = 13


# errno -> (what Python, Spark or deltalake say, what it means, what to do)
_STORAGE_FAULTS = {
    errno.ENOSPC: (
        "No space left on device",
        "the disk is full",
        "free space there or point env.storage_root at a larger disk, then re-run; the previous table "
        "versions are intact",
    ),
    errno.EROFS: ("Read-only file system", "the storage is read-only", "point env.storage_root at a writable folder"),
    errno.EACCES: (
        "Permission denied",
        "the storage may not be written",
        "point env.storage_root at a folder this user may write, or fix its permissions",
    ),
    errno.EPERM: (
        "Operation not permitted",
        "the storage may not be written",
        "point env.storage_root at a folder this user may write, or fix its permissions",
    ),
}


def storage_error(error: BaseException) -> StorageError | None:
    """The StorageError an unexpected exception stands for, or None when it is something else.

    A full or read-only disk surfaces as an OSError from Python, as text inside a deltalake or
    Spark (Java) error otherwise; both are recognised, through the exception's causes too.
    """
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for exc in seen:
        number = exc.errno if isinstance(exc, OSError) else None
        for code, (text, meaning, fix) in _STORAGE_FAULTS.items():
            if number == code or text in str(exc):
                where = getattr(exc, "filename", None) or "env.storage_root"
                # the line that names the fault: Spark's and deltalake's first lines ("An error
                # occurred while calling o769.parquet", "Failed to parse parquet") do not
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                shown = next((line for line in lines if text in line), lines[0] if lines else text)[:300]
                return StorageError(f"{meaning}: {shown}", where=str(where), fix=fix)
    return None
