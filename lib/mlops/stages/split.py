"""Stage split: labelled features -> `train` and `test`, by customer, sampled outside prod."""
from __future__ import annotations

import logging

from pyspark.sql import functions as F

from mlops.runtime import RunContext, StageResult
from mlops.splitting import assign_split, sample_entities

log = logging.getLogger(__name__)


def split(ctx: RunContext) -> StageResult:
    cfg = ctx.cfg
    keys = list(cfg.use_case.key_columns)
    entity = keys[0]
    labelled = ctx.read("features").join(ctx.read("labels"), keys, "inner")
    sampled = sample_entities(labelled, entity, cfg.env.sample_fraction, cfg.seed)
    assigned = assign_split(sampled, entity, cfg.use_case.split.test_fraction, cfg.seed)
    log.info("sampling %.0f%% of customers (env %s), %.0f%% of them for test",
             100 * cfg.env.sample_fraction, cfg.env.name, 100 * cfg.use_case.split.test_fraction)
    written = ctx.write_all({
        part: assigned.where(F.col("split") == part).drop("split") for part in ("train", "test")
    })
    return StageResult.of_writes("split", written)
