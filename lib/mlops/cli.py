"""The one wrapper every script uses: config -> RunContext -> stage(s) -> log and exit code."""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from omegaconf import DictConfig

from mlops.errors import PipelineError
from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)


def run_stages(stages: Sequence[str], cfg: DictConfig, ctx: RunContext | None = None) -> list[StageResult]:
    """Run stages in order in one RunContext (one Spark session); errors propagate."""
    from mlops.stages import STAGES

    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        from mlops.errors import ConfigError

        raise ConfigError(f"unknown stage(s) {unknown}", where="pipeline.stages", fix=f"one of {list(STAGES)}")
    ctx = ctx or RunContext.from_config(cfg)
    results = []
    for stage in stages:
        started = time.perf_counter()
        log.info("stage %s: %s %s %s (env %s)", stage, cfg.use_case.name, cfg.model.name, cfg.country.code,
                 cfg.env.name)
        result = STAGES[stage](ctx)
        log.info("stage %s done in %.1f s: tables %s, rows %s", stage, time.perf_counter() - started,
                 result.tables, result.rows)
        results.append(result)
    return results


def run_stage(stages: str | Sequence[str], cfg: DictConfig) -> list[StageResult]:
    """Entry point for scripts: an expected failure becomes one log line and its exit code."""
    try:
        return run_stages([stages] if isinstance(stages, str) else list(stages), cfg)
    except PipelineError as error:
        log.error("%s failed: %s", stages, error.message)
        sys.exit(error.exit_code)
