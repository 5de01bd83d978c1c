"""The one wrapper every script uses: config -> RunContext -> stage(s) -> log and exit code."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig

from mlops.errors import PipelineError, storage_error
from mlops.journal import recover_unfinished_writes
from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)


def run_stages(stages: Sequence[str], cfg: DictConfig, ctx: RunContext | None = None) -> list[StageResult]:
    """Run stages in order in one RunContext (one Spark session); errors propagate."""
    from mlops.config import validate_config
    from mlops.graph import Graph

    graph = Graph.from_config(cfg)
    graph.require_stages(stages, "pipeline.stages")
    validate_config(cfg)  # before the lock: a bad name must not create folders or files first
    results = []
    with run_lock(cfg):
        ctx = ctx or RunContext.from_config(cfg)
        recover_unfinished_writes(ctx)  # a killed run's half-written unit, undone while the lock is held
        for stage in stages:
            started = time.perf_counter()
            log.info(
                "stage %s: %s %s %s (env %s)", stage, cfg.use_case.name, cfg.model.name, cfg.country.code, cfg.env.name
            )
            result = graph.function(stage)(ctx)
            log.info(
                "stage %s done in %.1f s: tables %s, rows %s",
                stage,
                time.perf_counter() - started,
                result.tables,
                result.rows,
            )
            results.append(result)
    return results


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
    """Entry point for scripts: an expected failure becomes one log line and its exit code."""
    try:
        return run_stages([stages] if isinstance(stages, str) else list(stages), cfg)
    except PipelineError as error:
        log.error("%s failed: %s", stages, error.message)
        sys.exit(error.exit_code)
    except Exception as error:
        storage = storage_error(error)
        if storage is None:
            raise  # a bug: the traceback is the report
        log.error("%s failed: %s", stages, storage.message)
        sys.exit(storage.exit_code)
