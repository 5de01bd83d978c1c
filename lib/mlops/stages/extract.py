"""Stage extract: the raw source -> the clean `transactions` table of one country (or every country, pooled)."""

from __future__ import annotations

import datetime as dt
import logging

from omegaconf import OmegaConf
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
    loaded twice, a source that ends earlier or holds far fewer customers than the current
    table, and what the population refuses (e.g. a pooled country without home sales).
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
            "customers": F.count_distinct(F.col(ctx.cfg.use_case.key_columns[0])),
            # lines with a time of day: without invoices, the finest grain the source has
            "timed": F.count(F.when(timestamp != F.date_trunc("day", timestamp), 1)),
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
    check_duplicates(ctx, stats, where)
    check_history_kept(ctx, stats, where)


def check_duplicates(ctx: RunContext, stats: dict, where: str) -> None:
    """Exact duplicates judged at the grain the source has.

    With invoices (or times of day) a repeated line is the same item twice on one invoice, which
    UCI's data does for ~1% of lines; far more means the source was loaded twice. Without either,
    a line is a customer's day, quantity and value, and buying the same thing twice a day is
    legitimate: such repeats cannot be told from a double load, so they are counted and kept
    unless use_case.guards.daily_duplicates=refuse."""
    guards = ctx.cfg.use_case.guards
    rows, duplicates = stats["rows"], stats["rows"] - stats["distinct"]
    if not rows or not duplicates:
        return
    share, limit = duplicates / rows, float(guards.max_duplicate_share)
    daily = OmegaConf.select(ctx.cfg, "use_case.source.columns.invoice") is None and not stats["timed"]
    if daily and guards.get("daily_duplicates", "keep") == "keep":
        log.warning(
            "%s: %d of %d lines (%.0f%%) repeat another line of the same customer, day, quantity and value. "
            "Without invoices or times of day a second purchase of the same thing that day cannot be told "
            "from a line loaded twice: kept as purchases (use_case.guards.daily_duplicates=refuse judges "
            "them by max_duplicate_share=%g)",
            where,
            duplicates,
            rows,
            100 * share,
            limit,
        )
        return
    if share > limit:
        grain = "of the same customer, day, quantity and value" if daily else "exact duplicates"
        raise DataQualityError(
            f"{duplicates} of {rows} transaction lines are {grain} ({share:.0%} > {limit:.0%}): "
            "was the source loaded twice?",
            where=where,
            fix="deduplicate the source, or raise use_case.guards.max_duplicate_share"
            + (", or set use_case.guards.daily_duplicates=keep" if daily else ""),
        )


def check_history_kept(ctx: RunContext, stats: dict, where: str) -> None:
    """A new extract may not end earlier than the current transactions or lose many customers.

    A partial export (the oldest half of the lines, say) passes every per-row contract and can
    stay inside the shrink guard's row share, yet it moves "the latest day" back and the next
    scoring run would score that old day as today. One aggregation of the current table decides.
    """
    name = ctx.table_name("transactions")
    if stats["latest"] is None or not ctx.tables.exists(name):
        return
    guards = ctx.cfg.use_case.guards
    timestamp, entity = ctx.cfg.use_case.timestamp_column, ctx.cfg.use_case.key_columns[0]
    current = first_row(
        ctx.tables.read(name).agg(
            F.max(F.col(timestamp)).alias("latest"), F.count_distinct(F.col(entity)).alias("customers")
        )
    )
    problems = []
    if current["latest"] is not None and stats["latest"] < current["latest"]:
        problems.append(
            f"its latest transaction is {stats['latest']:%Y-%m-%d %H:%M}, earlier than the current "
            f"table's {current['latest']:%Y-%m-%d %H:%M} (the next scoring run would take that day as today)"
        )
    limit = guards.get("max_customer_drop_share")
    if limit is not None and current["customers"] and stats["customers"] < (1 - float(limit)) * current["customers"]:
        drop = 1 - stats["customers"] / current["customers"]
        problems.append(
            f"{stats['customers']} customers would replace the {current['customers']} of the current version "
            f"({drop:.0%} fewer, more than use_case.guards.max_customer_drop_share={float(limit):g} allows)"
        )
    if not problems:
        return
    change = "; ".join(problems)
    if guards.get("allow_shrink"):
        log.warning("%s: %s; allowed by use_case.guards.allow_shrink=true", where, change)
        return
    raise DataQualityError(
        f"the new extract goes back: {change}",
        where=where,
        fix="check the source is complete (a partial or older export?); if it is right, run once with "
        "use_case.guards.allow_shrink=true; nothing was written",
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
