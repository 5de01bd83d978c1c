"""The one wrapper every script uses: config -> RunContext -> stage(s) -> log and exit code."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlops import summary
from mlops.errors import PipelineError, storage_error
from mlops.journal import recover_unfinished_writes
from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)


def run_stages(stages: Sequence[str], cfg: DictConfig, ctx: RunContext | None = None) -> list[StageResult]:
    """Run stages in order in one RunContext (one Spark session); errors propagate."""
    return _run(stages, cfg, ctx)[0]


def _run(stages: Sequence[str], cfg: DictConfig, ctx: RunContext | None) -> tuple[list[StageResult], dict[str, Any]]:
    """(the asked stages' results, the summary of every stage run, upstream ones included)."""
    from mlops.config import validate_config
    from mlops.graph import Graph

    Graph.from_config(cfg).require_stages(stages, "pipeline.stages")
    validate_config(cfg)  # before the lock: a bad name must not create folders or files first
    results = []
    with run_lock(cfg):
        ctx = ctx or RunContext.from_config(cfg)
        # a killed run's half-written unit, undone first (locally while the lock is held)
        recover_unfinished_writes(ctx, stages)
        first = len(ctx.results)
        for stage in stages:
            log.info(
                "stage %s: %s %s %s (env %s)", stage, cfg.use_case.name, cfg.model.name, cfg.country.code, cfg.env.name
            )
            result = ctx.run(stage)
            log_stage_done(result)
            results.append(result)
    closing = summary.build(cfg, ctx.results[first:])
    summary.log_summary(closing)
    return results, closing


def ui_hint(cfg: DictConfig) -> str | None:
    """The command that opens this run's results: `make ui` for a local sqlite store (naming the
    storage root when it is not the default), the workspace's Experiments page on Databricks."""
    tracking = str(cfg.env.mlflow.tracking_uri)
    if tracking.startswith("sqlite:///"):
        store = Path(str(cfg.env.storage_root))
        default = Path(".local").resolve()
        argument = "" if store.resolve() == default else f" STORE={store}"
        return f"make ui{argument}, then open http://127.0.0.1:5000 (experiment {cfg.use_case.experiment})"
    if tracking.startswith("databricks"):
        return f"open the experiment {cfg.use_case.experiment} under Experiments in the Databricks workspace"
    return None


@contextlib.contextmanager
def run_lock(cfg: DictConfig) -> Iterator[None]:
    """One run at a time per use case and country on a local storage root.

    Two runs writing the same tables would interleave their versions (one run's features next to
    the other's labels). Per country, not per model: `transactions` is shared by the models. On
    Databricks the jobs' max_concurrent_runs and queues give the same guarantee, so only
    worlds whose tables are local files (DeltaPathTableStore) take a file lock; a second run waits up to env.lock_timeout_seconds.
    """
    from mlops.tables import keeps_local_files

    if not keeps_local_files(cfg.env):
        yield
        return
    import fcntl

    from mlops.errors import ConcurrentRunError

    path = Path(cfg.env.storage_root) / "locks" / f"{cfg.use_case.name}_{cfg.country.suffix}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = float(cfg.env.get("lock_timeout_seconds") or 0)
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:  # "a": never truncate what another run holds
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConcurrentRunError(
                        f"another run of {cfg.use_case.name} {cfg.country.code} has held the lock for {timeout:.0f} s",
                        where=str(path),
                        fix="wait for it to finish, or raise env.lock_timeout_seconds",
                    ) from None
                if not waited:
                    log.info(
                        "another run of %s %s is writing; waiting for %s", cfg.use_case.name, cfg.country.code, path
                    )
                    waited = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_stage(stages: str | Sequence[str], cfg: DictConfig) -> list[StageResult]:
    """Entry point for scripts: the closing summary on stdout, or an expected failure as one log
    line (and the data-quality report that explains it) and its exit code."""
    try:
        results, closing = _run([stages] if isinstance(stages, str) else list(stages), cfg, None)
    except PipelineError as error:
        log.error("%s failed: %s", stages, error.message)
        if error.report:
            log.error("data-quality report: %s", error.report)
        sys.exit(error.exit_code)
    except Exception as error:
        storage = storage_error(error)
        if storage is None:
            raise  # a bug: the traceback is the report
        log.error("%s failed: %s", stages, storage.message)
        sys.exit(storage.exit_code)
    sys.stdout.write(summary.render(closing, ui_hint(cfg)) + "\n")  # for the person who ran the script
    sys.stdout.flush()
    return results


def log_stage_done(result: StageResult) -> None:
    """The line a run's log ends each stage with; clv.studies.benchmark reads its figures from it."""
    # train and evaluate write no table: their line says nothing of tables rather than `tables {}`
    written = "".join(
        f"{name} {value}, " for name, value in (("tables", result.tables), ("rows", result.rows)) if value
    )
    log.info(
        "stage %s done in %.1f s: %sSpark jobs %s in %s queries",
        result.stage,
        result.seconds,
        written,
        "unknown" if result.spark_jobs is None else result.spark_jobs,
        "unknown" if result.spark_queries is None else result.spark_queries,
    )
