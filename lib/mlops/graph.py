"""The pipeline graph of conf/pipeline/*.yaml: stages, what each reads and writes, the jobs that group them.

The graph is read here and nowhere else, so the stage runner, the local run-missing-upstream rule
and the bundle generator cannot disagree about the pipeline's shape. Stage functions are named by
their import path in config and imported when first run: nothing below the runner imports
`mlops.stages`, and a new stage is a function, a script and a few lines of YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.runtime import RunContext, StageResult


@dataclass(frozen=True)
class Stage:
    name: str
    fn: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """A Databricks job: the job it runs first (optionally), the stages it runs in order, and
    (optionally) the job its last stage starts when retraining is required."""

    name: str
    stages: tuple[str, ...]
    description: str
    file: str
    timeout_hours: int
    retrain: str | None = None
    first: str | None = None


@dataclass(frozen=True)
class Graph:
    stages: dict[str, Stage]
    run: tuple[str, ...]
    jobs: dict[str, Job]
    schedules: dict[str, dict[str, str]]  # purpose -> task key -> job (crons: per model)
    nightly_setup: str
    nightly_steps: dict[str, str]  # task key prefix -> job

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Graph:
        pipeline: Any = OmegaConf.to_container(cfg.pipeline, resolve=False)
        stages = {
            name: Stage(name, str(spec["fn"]), tuple(spec.get("reads") or ()), tuple(spec.get("writes") or ()))
            for name, spec in (pipeline.get("graph") or {}).items()
        }
        jobs = {
            name: Job(
                name,
                tuple(spec["stages"]),
                str(spec["description"]),
                str(spec["file"]),
                int(spec["timeout_hours"]),
                spec.get("retrain"),
                spec.get("first"),
            )
            for name, spec in (pipeline.get("jobs") or {}).items()
        }
        schedules = {purpose: dict(spec["tasks"]) for purpose, spec in (pipeline.get("schedules") or {}).items()}
        nightly = pipeline.get("nightly") or {}
        graph = cls(
            stages=stages,
            run=tuple(pipeline.get("stages") or ()),
            jobs=jobs,
            schedules=schedules,
            nightly_setup=str(nightly.get("setup") or ""),
            nightly_steps=dict(nightly.get("steps") or {}),
        )
        graph.check()
        return graph

    def check(self) -> None:
        """Every name the graph uses is a stage or a job of it, every input has a stage that makes it,
        and the run order and each job run a producer before its readers: a typo or a misordered
        list fails here, not mid-run (or, on Databricks, as a missing table hours later)."""
        self.require_stages(self.run, "pipeline.stages")
        for stage in self.stages.values():
            orphans = [read for read in stage.reads if self.producer(read) is None]
            if orphans:
                raise ConfigError(
                    f"stage {stage.name!r} reads {orphans}, which no stage writes",
                    where=f"pipeline.graph.{stage.name}.reads",
                    fix="add the stage that writes it to pipeline.graph, or fix the name",
                )
        self.require_order(self.run, "pipeline.stages")
        for job in self.jobs.values():
            self.require_stages(job.stages, f"pipeline.jobs.{job.name}.stages")
            for key in ("retrain", "first"):
                named = getattr(job, key)
                if named is not None and (named not in self.jobs or named == job.name):
                    raise ConfigError(
                        f"pipeline.jobs.{job.name}.{key}={named!r} is not another job",
                        where="conf/pipeline",
                        fix=f"one of {[name for name in self.jobs if name != job.name]}",
                    )
            if job.first is not None and self.jobs[job.first].first is not None:
                raise ConfigError(
                    f"pipeline.jobs.{job.name}.first={job.first!r} runs a job first itself",
                    where="conf/pipeline",
                    fix="a job run first runs stages only",
                )
            self.require_order(self.job_stages(job.name), f"pipeline.jobs.{job.name}.stages")
        if self.nightly_setup:
            self.require_stages([self.nightly_setup], "pipeline.nightly.setup")
        called = [job for tasks in self.schedules.values() for job in tasks.values()]
        unknown = sorted({job for job in [*called, *self.nightly_steps.values()] if job not in self.jobs})
        if unknown:
            raise ConfigError(
                f"{unknown} are not jobs of the pipeline",
                where="pipeline.schedules / pipeline.nightly",
                fix=f"one of {list(self.jobs)}",
            )

    def job_stages(self, name: str) -> tuple[str, ...]:
        """Every stage a run of the job runs, in order: those of the job it runs first, then its own."""
        job = self.jobs[name]
        return (self.jobs[job.first].stages if job.first else ()) + job.stages

    def require_stages(self, names: Any, where: str) -> None:
        unknown = [name for name in names if name not in self.stages]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}", where=where, fix=f"one of {list(self.stages)}")

    def require_order(self, names: Any, where: str) -> None:
        """Within one list of stages, the producer of each input runs before the stage that reads it."""
        position = {name: index for index, name in enumerate(names)}
        for name in names:
            for read in self.stages[name].reads:
                producer = self.producer(read)
                if producer in position and position[producer] > position[name]:
                    raise ConfigError(
                        f"{name!r} reads {read!r} before {producer!r} writes it",
                        where=where,
                        fix=f"list {producer!r} before {name!r}",
                    )

    def producer(self, output: str) -> str | None:
        """The stage that makes a table or MLflow output: the first in the graph that writes it."""
        return next((stage.name for stage in self.stages.values() if output in stage.writes), None)

    def function(self, stage: str) -> Callable[[RunContext], StageResult]:
        from hydra.utils import get_method

        self.require_stages([stage], "pipeline.graph")
        return get_method(self.stages[stage].fn)
