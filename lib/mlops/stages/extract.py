"""Stage extract: the raw source -> the clean `transactions` table of one country (or every country, pooled)."""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.calendar import months_before
from mlops.config import parse_date
from mlops.errors import DataQualityError
from mlops.frames import first_row
from mlops.runtime import RunContext, StageResult
from mlops.sources import canonical_columns, make_source

log = logging.getLogger(__name__)


def earliest_plausible(ctx: RunContext, latest: dt.datetime) -> tuple[dt.date, str]:
    """(the earliest plausible transaction day, the setting that says so)."""
    guards = ctx.cfg.use_case.guards
    if guards.get("earliest_date"):
        return parse_date(guards.earliest_date, "use_case.guards.earliest_date"), "use_case.guards.earliest_date"
    years = int(guards.max_history_years)
    return months_before(latest.date(), 12 * years), f"use_case.guards.max_history_years={years}"


def check_transactions(ctx: RunContext, transactions: DataFrame, source_counts: dict) -> None:
    """What the per-row contract cannot see: sales dated after this run started (a clock or
    timezone fault upstream) or implausibly early (a mistyped year, a default date), a source
    loaded twice, and what the population refuses (e.g. a pooled country without home sales).
    Errors give counts and a few record names (use_case.record_column), never whole rows of customer data.

    The figures are aggregates of the contract's own pass over the table (RunContext.check), so
    the contract, these checks and the write read the transactions once."""
    timestamp = F.col(ctx.cfg.use_case.timestamp_column)
    record = ctx.cfg.use_case.record_column
    started_at = F.lit(ctx.started_at).cast("timestamp")
    where = str(ctx.table_name("transactions"))
    future = transactions.where(timestamp > started_at)
    population = ctx.population
    stats = ctx.check(
        transactions,
        ctx.suite("transactions"),
        table=where,
        measures={
            "rows": F.count("*"),
            "future": F.count(F.when(timestamp > started_at, 1)),
            "first": F.min(timestamp),
            "latest": F.max(timestamp),
            # distinct lines: a struct is never null, so every line counts, nulls compared as equal
            "distinct": F.count_distinct(F.struct(*transactions.columns)),
            **population.transaction_counts(),
        },
    )
    population.report(source_counts, stats, where)
    if stats["future"]:
        examples = sorted({row[record] for row in future.select(record).limit(3).collect()})
        raise DataQualityError(
            f"{stats['future']} transaction(s) are dated after this run started "
            f"({ctx.started_at:%Y-%m-%d %H:%M} UTC), e.g. {record}s {examples}",
            where=f"{where} column {ctx.cfg.use_case.timestamp_column}",
            fix="fix the source's dates or timezone (use_case.source.timestamp_format)",
        )
    earliest, rule = (None, "") if stats["latest"] is None else earliest_plausible(ctx, stats["latest"])
    if earliest is not None and stats["first"].date() < earliest:
        early = transactions.where(F.to_date(timestamp) < F.lit(earliest))
        examples = sorted({row[record] for row in early.select(record).limit(3).collect()})
        raise DataQualityError(
            f"{early.count()} transaction(s) are dated before {earliest}, the earliest plausible "
            f"day by {rule} (the earliest is {stats['first']:%Y-%m-%d}, the latest "
            f"{stats['latest']:%Y-%m-%d}), e.g. {record}s {examples}: they would stretch the "
            "snapshots back to that year",
            where=f"{where} column {ctx.cfg.use_case.timestamp_column}",
            fix="fix those dates in the source, or set use_case.guards.earliest_date (or "
            "max_history_years) if the history is genuine",
        )
    duplicates = stats["rows"] - stats["distinct"]
    limit = float(ctx.cfg.use_case.guards.max_duplicate_share)
    if stats["rows"] and duplicates / stats["rows"] > limit:
        raise DataQualityError(
            f"{duplicates} of {stats['rows']} transaction lines are exact duplicates "
            f"({duplicates / stats['rows']:.0%} > {limit:.0%}): was the source loaded twice?",
            where=where,
            fix="deduplicate the source, or raise use_case.guards.max_duplicate_share",
        )


def extract(ctx: RunContext) -> StageResult:
    use_case = ctx.cfg.use_case
    reader = make_source(use_case.source)
    source = reader.describe()
    raw = reader.read(ctx.spark)
    ctx.check(raw, ctx.suite("source"), table=source)

    canonical = canonical_columns(raw, use_case.source.columns)
    transactions = ctx.population.cleaning_function(use_case.cleaning.fn)(canonical)

    entity = use_case.key_columns[0]
    counts = first_row(
        canonical.agg(
            F.count("*").alias("rows"),
            F.count(F.when(F.col(entity).isNull() | (F.trim(F.col(entity)) == ""), 1)).alias("without_key"),
            *(value.alias(name) for name, value in ctx.population.source_counts().items()),
        )
    ).asDict()
    log.info("source %s: %d rows, %d without %s (dropped)", source, counts["rows"], counts["without_key"], entity)

    check_transactions(ctx, transactions, counts)
    ((version, rows),) = ctx.write_all({"transactions": transactions}).values()
    log.info(
        "kept %d of %d source rows for %s%s", rows, counts["rows"], ctx.cfg.country.code, ctx.population.describe()
    )
    return StageResult(
        stage="extract",
        tables={"transactions": version},
        rows={"source": counts["rows"], "source_without_key": counts["without_key"], "transactions": rows},
    )
