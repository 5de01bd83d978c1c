"""Stage extract: the raw source -> the clean `transactions` table of one country."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from pyspark.sql import functions as F

from mlops.quality import validate
from mlops.runtime import RunContext, StageResult
from mlops.sources import describe_source, read_source

log = logging.getLogger(__name__)


def extract(ctx: RunContext) -> StageResult:
    use_case = ctx.cfg.use_case
    source = describe_source(use_case.source)
    raw = read_source(ctx.spark, use_case.source)
    validate(raw, ctx.suite("source"), table=source)

    canonical = raw.select(*(F.col(f"`{column}`").alias(name) for name, column in use_case.source.columns.items()))
    clean_fn = instantiate(use_case.cleaning.fn)
    transactions = clean_fn(canonical)

    entity = use_case.key_columns[0]
    counts = canonical.agg(
        F.count("*").alias("rows"),
        F.count(F.when(F.col(entity).isNull() | (F.trim(F.col(entity)) == ""), 1)).alias("without_key"),
    ).first()
    log.info("source %s: %d rows, %d without %s (dropped)", source, counts["rows"], counts["without_key"], entity)

    (version, rows), = ctx.write_all({"transactions": transactions}).values()
    log.info("kept %d of %d source rows for %s", rows, counts["rows"], ctx.cfg.country.code)
    return StageResult(
        stage="extract",
        tables={"transactions": version},
        rows={"source": counts["rows"], "source_without_key": counts["without_key"], "transactions": rows},
    )
