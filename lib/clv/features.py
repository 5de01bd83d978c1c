"""Point-in-time features per customer and monthly snapshot date (MLOps Stacks' contract), in named groups.

Each group (recency_frequency, monetary, ...) is a small function naming its output columns and the
aggregates they are computed from, so a new feature is a change to one group with a test of that
group alone. The groups do not each scan the transactions: compute_feature_groups gathers their
aggregates into the few passes the data needs anyway (one per grain), so a group costs columns in
an existing aggregation, not another shuffle or join.

Model-based features (model_based: BG/NBD and Gamma-Gamma fitted per snapshot) are not a group:
they are fitted on the groups' output rows, so they come after them.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from clv.baselines import BGNBDBaseline
from clv.cleaning import money
from mlops.calendar import monthly_dates

log = logging.getLogger(__name__)

# The working frames' columns, which the groups' expressions read. The keys are renamed to private
# names on the way in and back to `key_columns` on the way out, so no group depends on what the
# use case calls them.
ENTITY, SNAPSHOT = "_entity", "_snapshot"
DAY, VALUE, UNITS, GAP = "day", "value", "units", "gap"
# every history pass counts purchases: a customer belongs to a snapshot's population from the first one on
PURCHASE_COUNT = "purchase_count"


def key_names(key_columns: Sequence[str]) -> tuple[str, str]:
    """(entity column, snapshot date column) from `use_case.key_columns`, refusing any other shape:
    a third key would silently be ignored by the features and the labels alike."""
    names = [str(name) for name in key_columns]
    if len(names) != 2:
        raise ValueError(f"key_columns={names} must name two columns: the entity, then the snapshot date")
    return names[0], names[1]


def snapshot_dates(start_date: dt.date, end_date: dt.date, cadence_months: int = 1) -> list[dt.date]:
    """Snapshots every `cadence_months`, anchored on end_date (see mlops.calendar.monthly_dates)."""
    return monthly_dates(start_date, end_date, cadence_months)


def _snapshots(
    input_df: DataFrame, start_date: dt.date, end_date: dt.date, cadence_months: int, dates: Sequence[dt.date] | None
) -> DataFrame:
    if dates is None:
        days = snapshot_dates(start_date, end_date, cadence_months)
    else:
        outside = [day for day in dates if not start_date <= day <= end_date]
        if outside:
            raise ValueError(f"dates {[str(day) for day in outside]} lie outside [{start_date}, {end_date}]")
        days = sorted(set(dates))
    rows = [(day,) for day in days]
    return F.broadcast(input_df.sparkSession.createDataFrame(rows, f"{SNAPSHOT} date"))


def _sum_or_zero(condition: Column, value: str | Column) -> Column:
    return F.coalesce(F.sum(F.when(condition, value)), F.lit(0))


def _purchase() -> Column:
    return ~F.col("is_return")


def _days_before() -> Column:
    # by calendar day: 0 on the snapshot day itself
    return F.datediff(F.col(SNAPSHOT), F.col(DAY))


@dataclass(frozen=True)
class FeatureGroup:
    """A named family of features: its output columns and the aggregates they are computed from.

    Aggregates are listed by the pass they run in, and each pass runs once with every group's
    aggregates; an aggregate two groups both list (say the purchased value) Spark evaluates once,
    so a group repeats what it needs under its own name rather than reading another group's output,
    and works composed alone. Names must be unique across the groups composed together.

    - `invoice`: per (customer, invoice, is_return), over its lines (the input's columns and `day`);
    - `history`: per key, over the invoices on or before the snapshot (`day`, `value`, `units`,
      `is_return` and the `invoice` aggregates);
    - `days`: per key, over the distinct days with a purchase on or before the snapshot, each with
      `gap`, the days since the customer's previous purchase day (null on the first);
    - `products`: per key, over each named product's first purchase, on or before the snapshot;
    - `per_snapshot`: (purchase days, snapshots) -> one row per snapshot, joined on its date;
    - `features`: the output columns, over the joined passes; they may read the group's aggregates,
      `purchase_count` and the snapshot date.
    """

    name: str
    features: Mapping[str, Column]
    invoice: Mapping[str, Column] = field(default_factory=dict)
    history: Mapping[str, Column] = field(default_factory=dict)
    days: Mapping[str, Column] = field(default_factory=dict)
    products: Mapping[str, Column] = field(default_factory=dict)
    per_snapshot: Callable[[DataFrame, DataFrame], DataFrame] | None = None


def recency_frequency() -> FeatureGroup:
    """How recently and how often the customer bought: the R and F of RFM, and the
    BG/NBD baseline's inputs. Frequency is counted both by invoice and by day: several invoices on
    one day are one visit, and BG/NBD counts visits."""
    days_before = F.when(_purchase(), _days_before())
    return FeatureGroup(
        "recency_frequency",
        history={"days_since_last_purchase": F.min(days_before), "tenure_days": F.max(days_before)},
        days={"purchase_days": F.count("*").cast("int")},
        features={
            "days_since_last_purchase": F.col("days_since_last_purchase").cast("int"),
            "tenure_days": F.col("tenure_days").cast("int"),
            PURCHASE_COUNT: F.col(PURCHASE_COUNT),
            "purchase_days": F.col("purchase_days"),
        },
    )


def monetary() -> FeatureGroup:
    """What the customer spends (returns aside, see `returns`): Gamma-Gamma's input, and the scale
    a value model predicts on."""
    return FeatureGroup(
        "monetary",
        history={"revenue_total": _sum_or_zero(_purchase(), F.col(VALUE)).cast("double")},
        features={
            "revenue_total": F.col("revenue_total"),
            "revenue_mean": F.col("revenue_total") / F.col(PURCHASE_COUNT),
        },
    )


def basket() -> FeatureGroup:
    """What a purchase looks like: a wholesaler's big baskets of few products behave unlike a
    shopper's small ones of many. `distinct_products` is null where no purchased line names a
    product (a source without products), not a count of one unknown product."""
    return FeatureGroup(
        "basket",
        history={"units_total": _sum_or_zero(_purchase(), F.col(UNITS)).cast("double")},
        products={"distinct_products": F.count("*").cast("int")},
        features={
            "basket_size_mean": F.col("units_total") / F.col(PURCHASE_COUNT),
            "distinct_products": F.col("distinct_products").cast("int"),
        },
    )


def returns() -> FeatureGroup:
    """The share of the purchased value that came back: a returner's revenue overstates their worth.
    0, not null, for a customer who bought nothing of value, so that the feature has no holes."""
    purchased = F.col("returns_purchased_value")
    return FeatureGroup(
        "returns",
        history={
            "returns_purchased_value": _sum_or_zero(_purchase(), F.col(VALUE)).cast("double"),
            "returned_value": _sum_or_zero(~_purchase(), -F.col(VALUE)).cast("double"),
        },
        features={"return_ratio": F.when(purchased > 0, F.col("returned_value") / purchased).otherwise(F.lit(0.0))},
    )


def gaps() -> FeatureGroup:
    """How regular the customer is, from the days between purchase days: a steady monthly buyer
    who has been away five weeks is overdue, an irregular one is not."""
    gap = F.col(GAP)
    gap_count = F.coalesce(F.col("gap_count"), F.lit(0))
    # sample variance from running sums; clamp the rounding error that can make it -1e-12
    gap_variance = (F.col("gap_sum_sq") - F.col("gap_sum") * F.col("gap_sum") / gap_count) / (gap_count - 1)
    return FeatureGroup(
        "gaps",
        days={
            "gap_count": F.count(gap),
            "gap_sum": F.sum(gap).cast("double"),
            "gap_sum_sq": F.sum(gap * gap).cast("double"),
        },
        features={
            "gap_mean_days": F.when(gap_count >= 1, F.col("gap_sum") / gap_count),
            "gap_std_days": F.when(gap_count >= 2, F.sqrt(F.greatest(gap_variance, F.lit(0.0)))),
        },
    )


def _purchases_and_revenue(inside: Column) -> tuple[Column, Column]:
    """The purchases on the invoices where `inside` holds, and their value."""
    inside = _purchase() & inside
    return F.count(F.when(inside, 1)).cast("int"), _sum_or_zero(inside, F.col(VALUE)).cast("double")


def trailing_windows(windows_days: Sequence[int]) -> FeatureGroup:
    """Purchases and revenue in each trailing window: the trend that totals since the first
    purchase hide (a big spender who stopped a year ago)."""
    history = {}
    for days in windows_days:
        history[f"purchases_{days}d"], history[f"revenue_{days}d"] = _purchases_and_revenue(_days_before() < days)
    return FeatureGroup("trailing_windows", history=history, features={name: F.col(name) for name in history})


def _last_year_rate(purchase_days: DataFrame, snapshots: DataFrame, window_days: int) -> DataFrame:
    """Per snapshot: of the customers who had bought by a year before it, the share who bought
    again within `window_days` after that day (null when nobody had bought by then)."""
    year_ago = F.date_sub(F.col(SNAPSHOT), 365)
    first_days = purchase_days.groupBy(ENTITY).agg(F.min(DAY).alias("first_day"))
    known = (
        first_days.join(snapshots, F.col("first_day") <= year_ago).groupBy(SNAPSHOT).agg(F.count("*").alias("known"))
    )
    came_back = (
        purchase_days.join(first_days, ENTITY)
        .join(
            snapshots,
            (F.col("first_day") <= year_ago)
            & (F.col(DAY) > year_ago)
            & (F.col(DAY) <= F.date_add(year_ago, window_days)),
        )
        .groupBy(SNAPSHOT)
        .agg(F.countDistinct(ENTITY).alias("came_back"))
    )
    rate = F.coalesce(F.col("came_back"), F.lit(0)) / F.col("known")
    return known.join(came_back, SNAPSHOT, "left").select(
        SNAPSHOT, rate.cast("double").alias("repurchase_rate_last_year_ahead")
    )


def seasonality(window_days: int) -> FeatureGroup:
    """Last year's version of the horizon being predicted: a gift retailer's pre-Christmas buyers
    come back every autumn, which recency alone cannot see.

    What the customer bought on the days 365-w .. 365 before the snapshot, and how many of all
    customers known a year before the snapshot bought in that window
    (`repurchase_rate_last_year_ahead`, one value per snapshot: the season's base rate, which the
    stacked snapshots otherwise blur together). Everything counted closed before the snapshot.
    """
    if not 0 < window_days <= 365:
        raise ValueError(f"seasonal_window_days={window_days} must lie in (0, 365]")
    days_before = _days_before()
    purchases, revenue = _purchases_and_revenue((days_before >= 365 - window_days) & (days_before < 365))
    rate = "repurchase_rate_last_year_ahead"
    return FeatureGroup(
        "seasonality",
        history={"purchases_last_year_ahead": purchases, "revenue_last_year_ahead": revenue},
        per_snapshot=partial(_last_year_rate, window_days=window_days),
        features={name: F.col(name) for name in ("purchases_last_year_ahead", "revenue_last_year_ahead", rate)},
    )


def calendar() -> FeatureGroup:
    """The snapshot's month, for a model that should learn a season directly rather than through
    last year's purchases (off by default: it always drifts, see docs/model_quality.md)."""
    return FeatureGroup("calendar", features={"snapshot_month": F.month(F.col(SNAPSHOT))})


def population(home_country: str) -> FeatureGroup:
    """`home_country_share`, the share of the customer's purchases up to the snapshot placed from
    `home_country` (a value of the `country` column): country as a feature, for a model trained on
    several countries' customers (mlops.population, `pooled`), which keeps its own by it."""
    at_home = F.col("at_home")
    return FeatureGroup(
        "population",
        invoice={"at_home": F.max((F.col("country") == F.lit(home_country)).cast("int"))},
        history={"home_country_share": F.avg(F.when(_purchase(), at_home)).cast("double")},
        features={"home_country_share": F.col("home_country_share")},
    )


def value_rates(longest_window_days: int) -> FeatureGroup:
    """Value per day of tenure and the recent share of it: they separate big from small spenders,
    and a customer whose spending moved into the last window from one whose spending left it."""
    days_before = F.when(_purchase(), _days_before())
    revenue_total, recent = F.col("value_rates_revenue_total"), F.col("value_rates_revenue_recent")
    return FeatureGroup(
        "value_rates",
        history={
            "value_rates_revenue_total": _sum_or_zero(_purchase(), F.col(VALUE)).cast("double"),
            "value_rates_tenure_days": F.max(days_before).cast("int"),
            "value_rates_revenue_recent": _purchases_and_revenue(_days_before() < longest_window_days)[1],
        },
        features={
            "revenue_per_day": revenue_total / (F.col("value_rates_tenure_days") + 1),
            f"revenue_share_{longest_window_days}d": F.when(revenue_total > 0, recent / revenue_total).otherwise(
                F.lit(0.0)
            ),
        },
    )


def _aggregates(groups: Sequence[FeatureGroup], kind: str) -> list[Column]:
    return [column.alias(name) for group in groups for name, column in getattr(group, kind).items()]


def _check_names(groups: Sequence[FeatureGroup]) -> None:
    """Two groups naming one column would meet as an ambiguous reference deep inside Spark's
    analysis; said here, it names the groups."""
    owner: dict[str, str] = {ENTITY: "the keys", SNAPSHOT: "the keys", PURCHASE_COUNT: "the population"}
    for group in groups:
        names = {*group.invoice, *group.history, *group.days, *group.products}
        for name in names:
            if name in owner:
                raise ValueError(f"feature groups {owner[name]!r} and {group.name!r} both compute {name!r}")
            owner[name] = group.name
    outputs: dict[str, str] = {}
    for group in groups:
        for name in group.features:
            if name in outputs:
                raise ValueError(f"feature groups {outputs[name]!r} and {group.name!r} both output {name!r}")
            outputs[name] = group.name


def compute_feature_groups(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    key_columns: Sequence[str],
    groups: Sequence[FeatureGroup],
    cadence_months: int = 1,
    dates: Sequence[dt.date] | None = None,
) -> DataFrame:
    """The keys and the groups' features, in the groups' order, one row per customer and snapshot.

    A snapshot sees only transactions on or before its date (by calendar day), and the
    population of a snapshot is every customer with at least one purchase by then. Work is done
    on invoices, not lines, and each history is joined to the (small, broadcast) snapshot list
    once per grain, so cost grows with invoices x snapshots rather than lines x snapshots; the
    purchase-day and product passes run only when a group needs them. `dates`, when given,
    replaces the monthly calendar (scoring several arbitrary dates in one pass).
    """
    entity, snapshot = key_names(key_columns)
    _check_names(groups)
    log.debug("feature groups %s keyed by %s", [group.name for group in groups], [entity, snapshot])
    snapshots = _snapshots(input_df, start_date, end_date, cadence_months, dates)
    lines = input_df.select("*", F.col(entity).alias(ENTITY), F.to_date(F.col(timestamp_column)).alias(DAY))
    invoices = lines.groupBy(ENTITY, "invoice", "is_return").agg(
        F.min(DAY).alias(DAY),
        F.sum(money("revenue")).alias(VALUE),
        F.sum("quantity").alias(UNITS),
        *_aggregates(groups, "invoice"),
    )
    seen_by_snapshot = F.col(DAY) <= F.col(SNAPSHOT)
    keys = [ENTITY, SNAPSHOT]
    rows = (
        invoices.join(snapshots, seen_by_snapshot)
        .groupBy(*keys)
        .agg(F.count(F.when(_purchase(), 1)).cast("int").alias(PURCHASE_COUNT), *_aggregates(groups, "history"))
        .where(F.col(PURCHASE_COUNT) > 0)
    )

    purchase_days = invoices.where(_purchase()).select(ENTITY, DAY).distinct()
    if any(group.days for group in groups):
        previous_day = F.lag(DAY).over(Window.partitionBy(ENTITY).orderBy(DAY))
        days = purchase_days.select(ENTITY, DAY, F.datediff(F.col(DAY), previous_day).alias(GAP))
        per_day = days.join(snapshots, seen_by_snapshot).groupBy(*keys).agg(*_aggregates(groups, "days"))
        rows = rows.join(per_day, keys, "left")
    if any(group.products for group in groups):
        named = lines.where(_purchase() & F.col("stock_code").isNotNull())
        first_purchase_of_product = named.groupBy(ENTITY, "stock_code").agg(F.min(DAY).alias(DAY))
        per_product = (
            first_purchase_of_product.join(snapshots, seen_by_snapshot)
            .groupBy(*keys)
            .agg(*_aggregates(groups, "products"))
        )
        rows = rows.join(per_product, keys, "left")
    for group in groups:
        if group.per_snapshot is not None:
            rows = rows.join(F.broadcast(group.per_snapshot(purchase_days, snapshots)), SNAPSHOT, "left")

    return rows.select(
        F.col(ENTITY).alias(entity),
        F.col(SNAPSHOT).alias(snapshot),
        *(column.alias(name) for group in groups for name, column in group.features.items()),
    )


# The model-based features (model_based), appended after every group's columns when asked for.
BGNBD_COLUMNS = ("bgnbd_p_alive", "bgnbd_expected_purchases", "bgnbd_expected_value")
# weeks, as the gate's BG/NBD baseline (model.baseline.estimator), so the parameters read alike
BGNBD_TIME_UNIT_DAYS = 7


def _worker_logging() -> None:
    """A Spark Python worker starts without any logging configuration: INFO is dropped and a
    WARNING reaches stderr bare. There, `clv`'s loggers get a stderr handler at INFO, so that each
    snapshot's fit shows in the executor's log. A process that configured logging (the driver,
    pytest) is left alone."""
    package = logging.getLogger(__name__.split(".")[0])
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


def bgnbd_snapshot_scores(rows: pd.DataFrame, entity: str, snapshot: str, horizon_days: int) -> pd.DataFrame:
    """One snapshot's feature rows (one per customer) with BGNBD_COLUMNS appended: BG/NBD and
    Gamma-Gamma fitted on exactly these rows, and scored on them.

    The rows are sorted by customer first: the fit sums its likelihood over the rows, and Spark
    hands them over in whatever order the shuffle delivers, so unsorted a rerun could write
    features that differ in their last bits. A snapshot the models cannot be fitted on (too few
    customers, nobody with a repeat purchase, no convergence) gets nulls and a warning naming it,
    rather than failing the whole feature table over one early snapshot.
    """
    _worker_logging()
    rows = rows.sort_values(entity, kind="stable", ignore_index=True)
    day = rows[snapshot].iloc[0] if len(rows) else None
    scores: tuple[np.ndarray, ...]
    try:
        model = BGNBDBaseline(time_unit_days=BGNBD_TIME_UNIT_DAYS).fit(rows)
        scores = (
            model.prob_alive(rows),
            model.expected_purchases(rows, horizon_days),
            model.expected_value(rows, horizon_days),
        )
    except ValueError as err:
        log.warning("BG/NBD features at snapshot %s left null (%d customers): %s", day, len(rows), err)
        scores = tuple(np.full(len(rows), np.nan) for _ in BGNBD_COLUMNS)
    else:
        spend = "Gamma-Gamma" if model.gamma_gamma is not None else "the mean spend"
        log.info("BG/NBD features at snapshot %s: fitted on %d customers, spend by %s", day, len(rows), spend)
    return rows.assign(**{name: np.asarray(values, dtype="float64") for name, values in zip(BGNBD_COLUMNS, scores)})


def model_based(rows: DataFrame, key_columns: Sequence[str], horizon_days: int) -> DataFrame:
    """`rows` (a feature table with the recency_frequency and monetary columns) with the textbook
    models' view of each customer appended: P(alive), expected purchase days and expected revenue
    (BG/NBD x Gamma-Gamma) over the next `horizon_days`.

    Fitted per snapshot, on that snapshot's rows alone (every customer of its population once):
    the rows only see transactions on or before their snapshot, so no purchase after a snapshot
    can reach its features through the fitted parameters either, as it would through one fit over
    all the stacked snapshots (whose later rows see later purchases). It is also the fit the
    literature describes, one calibration period with one row per customer, not the same customer
    counted once per snapshot. Scoring dates are snapshots like any other, so training and scoring
    compute these alike.

    One `applyInPandas` grouped by snapshot date: a transformation, not an action, so the fits run
    inside the actions the stage takes anyway (adaptive execution does run the shuffle by snapshot
    date as one more job within each action that computes these rows); DataFrame API only, so it
    runs over Spark Connect too. The whole rows pass through the worker and come back with the
    three columns, rather than only the model's five inputs joined back afterwards, which would
    cost a join and compute the rows twice. Each snapshot's rows meet in one pandas frame in one
    Python worker (for a million customers, some hundreds of MB).
    """
    if horizon_days <= 0:
        raise ValueError(f"bgnbd_horizon_days={horizon_days} must be a positive number of days")
    entity, snapshot = key_names(key_columns)
    schema = StructType([*rows.schema.fields, *(StructField(name, DoubleType(), True) for name in BGNBD_COLUMNS)])

    def score(snapshot_rows: pd.DataFrame) -> pd.DataFrame:
        return bgnbd_snapshot_scores(snapshot_rows, entity, snapshot, horizon_days)

    return rows.groupBy(snapshot).applyInPandas(score, schema)


def repurchase_groups(
    *,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    seasonal_window_days: int | None = None,
    calendar_features: bool = False,
    home_country: str | None = None,
) -> list[FeatureGroup]:
    """The repurchase model's groups, in the feature table's column order."""
    groups = [recency_frequency(), monetary(), basket(), returns(), gaps(), trailing_windows(windows_days)]
    if seasonal_window_days is not None:
        groups.append(seasonality(seasonal_window_days))
    if calendar_features:
        groups.append(calendar())
    if home_country:
        groups.append(population(home_country))
    return groups


def compute_features_repurchase_fn(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    key_columns: Sequence[str],
    cadence_months: int = 1,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    dates: Sequence[dt.date] | None = None,
    seasonal_window_days: int | None = None,
    calendar_features: bool = False,
    home_country: str | None = None,
    bgnbd_horizon_days: int | None = None,
) -> DataFrame:
    """Recency, frequency, monetary, basket, returns, gaps and trailing windows per customer and
    snapshot; seasonality (`seasonal_window_days`), the snapshot's month (`calendar_features`) and
    the home-country share (`home_country`, which the platform passes for a pooled population)
    when asked for, and last the BG/NBD and Gamma-Gamma quantities over `bgnbd_horizon_days`
    (model_based). See the groups for why each is there, compute_feature_groups for what a
    snapshot sees.

    `key_columns` (use_case.key_columns): the entity column of `input_df`, then the name of the
    snapshot date column to write; the feature table's keys, in that order.
    """
    groups = repurchase_groups(
        windows_days=windows_days,
        seasonal_window_days=seasonal_window_days,
        calendar_features=calendar_features,
        home_country=home_country,
    )
    features = compute_feature_groups(
        input_df,
        timestamp_column,
        start_date,
        end_date,
        key_columns=key_columns,
        groups=groups,
        cadence_months=cadence_months,
        dates=dates,
    )
    return features if bgnbd_horizon_days is None else model_based(features, key_columns, bgnbd_horizon_days)


def compute_features_ltv_fn(
    input_df: DataFrame,
    timestamp_column: str,
    start_date: dt.date,
    end_date: dt.date,
    *,
    key_columns: Sequence[str],
    cadence_months: int = 1,
    windows_days: Sequence[int] = (30, 90, 180, 365),
    dates: Sequence[dt.date] | None = None,
    seasonal_window_days: int | None = None,
    calendar_features: bool = False,
    home_country: str | None = None,
    bgnbd_horizon_days: int | None = None,
) -> DataFrame:
    """The repurchase features plus value-rate features that separate big from small spenders.

    The repurchase groups plus one, rather than a second definition beside them: the two models
    share one definition of recency, frequency and value, and one pass over the data. The BG/NBD
    columns (`bgnbd_horizon_days`, model_based) come last, as in the repurchase features.
    """
    groups = repurchase_groups(
        windows_days=windows_days,
        seasonal_window_days=seasonal_window_days,
        calendar_features=calendar_features,
        home_country=home_country,
    )
    features = compute_feature_groups(
        input_df,
        timestamp_column,
        start_date,
        end_date,
        key_columns=key_columns,
        groups=[*groups, value_rates(max(windows_days))],
        cadence_months=cadence_months,
        dates=dates,
    )
    return features if bgnbd_horizon_days is None else model_based(features, key_columns, bgnbd_horizon_days)
