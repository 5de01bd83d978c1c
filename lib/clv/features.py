"""Point-in-time RFM features per customer and monthly snapshot date (MLOps Stacks' contract)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from clv.cleaning import money
from mlops.calendar import monthly_dates

KEYS = ["customer_id", "snapshot_date"]


def snapshot_dates(start_date: dt.date, end_date: dt.date, cadence_months: int = 1) -> list[dt.date]:
    """Snapshots every `cadence_months`, anchored on end_date (see mlops.calendar.monthly_dates)."""
    return monthly_dates(start_date, end_date, cadence_months)


def _snapshots(input_df: DataFrame, start_date: dt.date, end_date: dt.date, cadence_months: int,
               dates: Sequence[dt.date] | None) -> DataFrame:
    if dates is None:
        days = snapshot_dates(start_date, end_date, cadence_months)
    else:
        outside = [day for day in dates if not start_date <= day <= end_date]
        if outside:
            raise ValueError(f"dates {[str(day) for day in outside]} lie outside [{start_date}, {end_date}]")
        days = sorted(set(dates))
    rows = [(day,) for day in days]
    return F.broadcast(input_df.sparkSession.createDataFrame(rows, "snapshot_date date"))


def _sum_or_zero(condition: Column, value: str | Column) -> Column:
    return F.coalesce(F.sum(F.when(condition, value)), F.lit(0))


def _last_year_rate(purchase_days: DataFrame, snapshots: DataFrame, window_days: int) -> DataFrame:
    """Per snapshot: of the customers who had bought by a year before it, the share who bought
    again within `window_days` after that day (null when nobody had bought by then)."""
    year_ago = F.date_sub(F.col("snapshot_date"), 365)
    first_days = purchase_days.groupBy("customer_id").agg(F.min("day").alias("first_day"))
    known = (first_days.join(snapshots, F.col("first_day") <= year_ago)
             .groupBy("snapshot_date").agg(F.count("*").alias("known")))
    came_back = (
        purchase_days.join(first_days, "customer_id")
        .join(snapshots, (F.col("first_day") <= year_ago) & (F.col("day") > year_ago)
              & (F.col("day") <= F.date_add(year_ago, window_days)))
        .groupBy("snapshot_date").agg(F.countDistinct("customer_id").alias("came_back"))
    )
    return known.join(came_back, "snapshot_date", "left").select(
        "snapshot_date",
        (F.coalesce(F.col("came_back"), F.lit(0)) / F.col("known")).cast("double").alias("repurchase_rate_last_year_ahead"),
    )


def compute_features_repurchase_fn(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    cadence_months: int = 1,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    dates: Sequence[dt.date] | None = None,
    seasonal_window_days: int | None = None,
    calendar_features: bool = False,
    home_country: str | None = None,
) -> DataFrame:
    """Recency, frequency, monetary, tenure, trailing windows, gaps, products, basket, returns.

    Seasonality, when asked for: `seasonal_window_days` adds what the customer bought in the
    same window one year earlier (days 365-w .. 365 before the snapshot, i.e. last year's
    version of the horizon being predicted), and how many of all customers known a year before
    the snapshot bought in that window (`repurchase_rate_last_year_ahead`, one value per
    snapshot: the season's base rate, which the stacked snapshots otherwise blur together);
    `calendar_features` adds the snapshot's month. A gift retailer's pre-Christmas buyers come
    back every autumn, which recency alone cannot see. Everything counted closed before the
    snapshot, so no feature looks past it.

    `home_country` (a value of the `country` column) adds `home_country_share`, the share of the
    customer's purchases up to the snapshot placed from that country: country as a feature, for a
    model trained on several countries' customers (mlops.population, `pooled`).

    A snapshot sees only transactions on or before its date (by calendar day), and the
    population of a snapshot is every customer with at least one purchase by then. Work is done
    on invoices, not lines, and each history is joined to the (small, broadcast) snapshot list
    once, so cost grows with invoices x snapshots rather than lines x snapshots. `dates`, when
    given, replaces the monthly calendar (scoring several arbitrary dates in one pass).
    """
    if seasonal_window_days is not None and not 0 < seasonal_window_days <= 365:
        raise ValueError(f"seasonal_window_days={seasonal_window_days} must lie in (0, 365]")
    snapshots = _snapshots(input_df, start_date, end_date, cadence_months, dates)
    lines = input_df.select(
        "customer_id", "stock_code", "quantity", "revenue", "is_return", "invoice",
        F.to_date(F.col(timestamp_column)).alias("day"),
        *([(F.col("country") == F.lit(home_country)).cast("int").alias("at_home")] if home_country else []),
    )
    invoices = lines.groupBy("customer_id", "invoice", "is_return").agg(
        F.min("day").alias("day"), F.sum(money("revenue")).alias("value"), F.sum("quantity").alias("units"),
        *([F.max("at_home").alias("at_home")] if home_country else []),
    )
    seen_by_snapshot = F.col("day") <= F.col("snapshot_date")
    days_before = F.datediff(F.col("snapshot_date"), F.col("day"))
    purchase = ~F.col("is_return")

    trailing = []
    for days in windows_days:
        in_window = purchase & (days_before < days)
        trailing += [
            F.count(F.when(in_window, 1)).cast("int").alias(f"purchases_{days}d"),
            _sum_or_zero(in_window, F.col("value")).cast("double").alias(f"revenue_{days}d"),
        ]
    seasonal = []
    if seasonal_window_days:
        last_year_ahead = purchase & (days_before >= 365 - seasonal_window_days) & (days_before < 365)
        trailing += [
            F.count(F.when(last_year_ahead, 1)).cast("int").alias("purchases_last_year_ahead"),
            _sum_or_zero(last_year_ahead, F.col("value")).cast("double").alias("revenue_last_year_ahead"),
        ]
        seasonal = ["purchases_last_year_ahead", "revenue_last_year_ahead"]
    if calendar_features:
        seasonal.append(F.month("snapshot_date").alias("snapshot_month"))
    history = (
        invoices.join(snapshots, seen_by_snapshot)
        .groupBy(*KEYS)
        .agg(
            F.count(F.when(purchase, 1)).cast("int").alias("purchase_count"),
            F.min(F.when(purchase, days_before)).alias("days_since_last_purchase"),
            F.max(F.when(purchase, days_before)).alias("tenure_days"),
            _sum_or_zero(purchase, F.col("value")).cast("double").alias("revenue_total"),
            _sum_or_zero(purchase, F.col("units")).cast("double").alias("units_total"),
            _sum_or_zero(~purchase, -F.col("value")).cast("double").alias("returned_value"),
            *trailing,
            *([F.avg(F.when(purchase, F.col("at_home"))).cast("double").alias("home_country_share")]
              if home_country else []),
        )
        .where(F.col("purchase_count") > 0)
    )

    purchase_days = invoices.where(purchase).select("customer_id", "day").distinct()
    per_customer_by_time = Window.partitionBy("customer_id").orderBy("day")
    gaps = purchase_days.select(
        "customer_id", "day", F.datediff(F.col("day"), F.lag("day").over(per_customer_by_time)).alias("gap"),
    ).where(F.col("gap").isNotNull())
    gap_stats = (
        gaps.join(snapshots, seen_by_snapshot)
        .groupBy(*KEYS)
        .agg(
            F.count("gap").alias("gap_count"),
            F.sum("gap").cast("double").alias("gap_sum"),
            F.sum(F.col("gap") * F.col("gap")).cast("double").alias("gap_sum_sq"),
        )
    )

    first_purchase_of_product = (
        lines.where(~F.col("is_return")).groupBy("customer_id", "stock_code").agg(F.min("day").alias("day"))
    )
    products = (
        first_purchase_of_product.join(snapshots, seen_by_snapshot)
        .groupBy(*KEYS)
        .agg(F.count("*").cast("int").alias("distinct_products"))
    )

    rows = history.join(gap_stats, KEYS, "left").join(products, KEYS, "left")
    if seasonal_window_days:
        rows = rows.join(F.broadcast(_last_year_rate(purchase_days, snapshots, seasonal_window_days)),
                         "snapshot_date", "left")
        seasonal.insert(2, "repurchase_rate_last_year_ahead")

    gap_count = F.coalesce(F.col("gap_count"), F.lit(0))
    # sample variance from running sums; clamp the rounding error that can make it -1e-12
    gap_variance = (F.col("gap_sum_sq") - F.col("gap_sum") * F.col("gap_sum") / gap_count) / (gap_count - 1)
    return (
        rows.select(
            "customer_id",
            "snapshot_date",
            F.col("days_since_last_purchase").cast("int").alias("days_since_last_purchase"),
            F.col("tenure_days").cast("int").alias("tenure_days"),
            "purchase_count",
            (gap_count + 1).cast("int").alias("purchase_days"),
            "revenue_total",
            (F.col("revenue_total") / F.col("purchase_count")).alias("revenue_mean"),
            (F.col("units_total") / F.col("purchase_count")).alias("basket_size_mean"),
            F.coalesce(F.col("distinct_products"), F.lit(0)).cast("int").alias("distinct_products"),
            F.when(F.col("revenue_total") > 0, F.col("returned_value") / F.col("revenue_total"))
            .otherwise(F.lit(0.0)).alias("return_ratio"),
            F.when(gap_count >= 1, F.col("gap_sum") / gap_count).alias("gap_mean_days"),
            F.when(gap_count >= 2, F.sqrt(F.greatest(gap_variance, F.lit(0.0)))).alias("gap_std_days"),
            *(name for days in windows_days for name in (f"purchases_{days}d", f"revenue_{days}d")),
            *seasonal,
            *(["home_country_share"] if home_country else []),
        )
    )


def compute_features_ltv_fn(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    cadence_months: int = 1,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    dates: Sequence[dt.date] | None = None,
    seasonal_window_days: int | None = None,
    calendar_features: bool = False,
    home_country: str | None = None,
) -> DataFrame:
    """The repurchase features plus value-rate features that separate big from small spenders.

    Built on compute_features_repurchase_fn rather than beside it: the two models share one
    definition of recency, frequency and value.
    """
    base = compute_features_repurchase_fn(input_df, timestamp_column, start_date, end_date,
                                          cadence_months=cadence_months, windows_days=windows_days, dates=dates,
                                          seasonal_window_days=seasonal_window_days,
                                          calendar_features=calendar_features, home_country=home_country)
    longest = max(windows_days)
    return base.select(
        "*",
        (F.col("revenue_total") / (F.col("tenure_days") + 1)).alias("revenue_per_day"),
        F.when(F.col("revenue_total") > 0, F.col(f"revenue_{longest}d") / F.col("revenue_total"))
        .otherwise(F.lit(0.0)).alias(f"revenue_share_{longest}d"),
    )
