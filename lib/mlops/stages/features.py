"""Stage features: `transactions` -> the feature table (truncate and load) and the label table."""

from __future__ import annotations

import datetime as dt
import logging

from hydra.utils import instantiate

from mlops.config import parse_date
from mlops.errors import ConfigError, DataQualityError
from mlops.feature_store import FeatureTableSpec
from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)


def snapshot_window(ctx: RunContext, transactions) -> tuple[dt.date, dt.date, dt.date]:
    """(start_date, end_date, observed_until) from config, filling gaps from the data itself."""
    from pyspark.sql import functions as F

    snapshots = ctx.cfg.use_case.snapshots
    day = F.to_date(F.col(ctx.cfg.use_case.timestamp_column))
    share = float(ctx.cfg.use_case.guards.leading_share)
    # the day bounds and the bulk's start in one pass over the transactions
    bounds = ctx.day_bounds(transactions, {"bulk": F.percentile_approx(F.datediff(day, F.lit("1970-01-01")), share)})
    first_day, _, observed_until = ctx.observed_days(transactions, bounds)
    end_date = parse_date(snapshots.end_date, "use_case.snapshots.end_date") if snapshots.end_date else observed_until
    start_date = (
        parse_date(snapshots.start_date, "use_case.snapshots.start_date") if snapshots.start_date else first_day
    )
    if start_date > end_date:
        raise ConfigError(
            f"snapshot start {start_date} is after snapshot end {end_date}",
            where="use_case.snapshots",
            fix="set start_date <= end_date (or leave them null)",
        )
    check_leading_gap(ctx, bounds["bulk"], start_date)
    return start_date, end_date, observed_until


def check_leading_gap(ctx: RunContext, offset: int | None, first_snapshot: dt.date) -> None:
    """The first snapshot may not lie far before the bulk of the data.

    A handful of early lines (a backdated correction, a year typed wrong but still plausible)
    would otherwise add months of near-empty snapshots whose labels teach the model about
    customers who barely existed. The bulk starts on the day by which use_case.guards.leading_share
    of the transactions have happened: `offset`, in days since 1970-01-01.
    """
    guards = ctx.cfg.use_case.guards
    share, limit = float(guards.leading_share), int(guards.max_leading_gap_days)
    if offset is None:
        return
    bulk = dt.date(1970, 1, 1) + dt.timedelta(days=int(offset))
    gap = (bulk - first_snapshot).days
    if gap > limit:
        raise DataQualityError(
            f"the first snapshot {first_snapshot} lies {gap} days before the bulk of the data (the day by which "
            f"{share:.0%} of the transactions have happened: {bulk}), more than use_case.guards.max_leading_gap_days="
            f"{limit}",
            where=f"{ctx.table_name('transactions')} column {ctx.cfg.use_case.timestamp_column}",
            fix=f"check the earliest transactions' dates in the source; or set use_case.snapshots.start_date={bulk} "
            "to start where the data does, or raise use_case.guards.max_leading_gap_days",
        )


def features(ctx: RunContext) -> StageResult:
    use_case, model = ctx.cfg.use_case, ctx.cfg.model
    transactions = ctx.read("transactions")
    start_date, end_date, observed_until = snapshot_window(ctx, transactions)
    log.info(
        "snapshots %s .. %s every %s month(s); labels need horizons ending by %s",
        start_date,
        end_date,
        use_case.snapshots.cadence_months,
        observed_until,
    )

    compute_features_fn = ctx.population.feature_function(model.features.fn)
    feature_df = compute_features_fn(transactions, use_case.timestamp_column, start_date, end_date)
    label_fn = instantiate(model.label.fn)
    label_df = label_fn(
        transactions, feature_df, timestamp_column=use_case.timestamp_column, observed_until=observed_until
    )

    # a feature table: the keys identify a row, the snapshot date is what point-in-time lookups compare
    keys = list(use_case.key_columns)
    feature_table = FeatureTableSpec.from_key_columns(
        ctx.table_name("features"),
        keys,
        description=f"{use_case.name} {model.name} features, one row per {' and '.join(keys)}; "
        "truncate-and-load by the features stage",
    )
    written = ctx.write_all({"features": feature_df, "labels": label_df}, feature_tables={"features": feature_table})
    return StageResult.of_writes(
        "features",
        written,
        details={"start_date": start_date, "end_date": end_date, "observed_until": observed_until},
    )
