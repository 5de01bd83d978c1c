"""Stage extract: the raw source -> the clean `transactions` table of one country (or every country, pooled)."""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.errors import DataQualityError
from mlops.population import cleaning_function, is_pooled
from mlops.quality import validate
from mlops.runtime import RunContext, StageResult
from mlops.sources import describe_source, read_source

log = logging.getLogger(__name__)


def check_transactions(ctx: RunContext, transactions: DataFrame) -> None:
    """What the per-row contract cannot see: sales dated after this run started (a clock or
    timezone fault upstream), a source loaded twice, and (pooled) no sales in the home country.
    Errors give counts and a few invoice numbers, never whole rows of customer data."""
    timestamp = F.col(ctx.cfg.use_case.timestamp_column)
    started_at = F.lit(ctx.started_at).cast("timestamp")
    where = str(ctx.table_name("transactions"))
    future = transactions.where(timestamp > started_at)
    home = ctx.cfg.country.source_value
    stats = transactions.agg(F.count("*").alias("rows"), F.count(F.when(timestamp > started_at, 1)).alias("future"),
                             F.count(F.when(F.col("country") == F.lit(home), 1)).alias("home")).first()
    if is_pooled(ctx.cfg) and stats["rows"] and not stats["home"]:
        # pooled keeps every country, so a misspelt country would train on the others and test on nobody
        raise DataQualityError(f"no transactions of {home!r} among the {stats['rows']} of every country: a pooled "
                               "population is judged and served on its home country's customers",
                               where=f"{where} column country",
                               fix="set country.source_value to a value of the source's country column")
    if stats["future"]:
        examples = sorted({row["invoice"] for row in future.select("invoice").limit(3).collect()})
        raise DataQualityError(f"{stats['future']} transaction(s) are dated after this run started "
                               f"({ctx.started_at:%Y-%m-%d %H:%M} UTC), e.g. invoices {examples}",
                               where=f"{where} column {ctx.cfg.use_case.timestamp_column}",
                               fix="fix the source's dates or timezone (use_case.source.timestamp_format)")
    duplicates = stats["rows"] - transactions.distinct().count()
    limit = float(ctx.cfg.use_case.guards.max_duplicate_share)
    if stats["rows"] and duplicates / stats["rows"] > limit:
        raise DataQualityError(f"{duplicates} of {stats['rows']} transaction lines are exact duplicates "
                               f"({duplicates / stats['rows']:.0%} > {limit:.0%}): was the source loaded twice?",
                               where=where, fix="deduplicate the source, or raise use_case.guards.max_duplicate_share")


def extract(ctx: RunContext) -> StageResult:
    use_case = ctx.cfg.use_case
    source = describe_source(use_case.source)
    raw = read_source(ctx.spark, use_case.source)
    validate(raw, ctx.suite("source"), table=source, persist=ctx.persist)

    canonical = raw.select(*(F.col(f"`{column}`").alias(name) for name, column in use_case.source.columns.items()))
    transactions = cleaning_function(ctx.cfg)(canonical)

    entity = use_case.key_columns[0]
    counts = canonical.agg(
        F.count("*").alias("rows"),
        F.count(F.when(F.col(entity).isNull() | (F.trim(F.col(entity)) == ""), 1)).alias("without_key"),
    ).first()
    log.info("source %s: %d rows, %d without %s (dropped)", source, counts["rows"], counts["without_key"], entity)

    check_transactions(ctx, transactions)
    (version, rows), = ctx.write_all({"transactions": transactions}).values()
    log.info("kept %d of %d source rows for %s%s", rows, counts["rows"], ctx.cfg.country.code,
             " (pooled: every country's customers)" if is_pooled(ctx.cfg) else "")
    return StageResult(
        stage="extract",
        tables={"transactions": version},
        rows={"source": counts["rows"], "source_without_key": counts["without_key"], "transactions": rows},
    )
