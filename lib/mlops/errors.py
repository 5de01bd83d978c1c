"""Pipeline errors that carry what went wrong, where, and how to fix it, plus an exit code."""
from __future__ import annotations


class PipelineError(Exception):
    """An expected failure: reported in one clear message, never as a traceback."""

    exit_code = 10

    def __init__(self, what: str, *, where: str = "", fix: str = "") -> None:
        self.what, self.where, self.fix = what, where, fix
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
