"""Point-in-time features on a tiny history that shows every edge case by eye."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.testing import assertDataFrameEqual

from clv.features import compute_features_repurchase_fn, snapshot_dates

D = dt.date
TS = dt.datetime

TRANSACTION_SCHEMA = ("customer_id string, invoice string, stock_code string, quantity int, price double, "
                      "revenue double, is_return boolean, invoice_date timestamp")


def tx(customer, invoice, stock_code, quantity, price, when):
    return (customer, invoice, stock_code, quantity, price, quantity * price, invoice.startswith("C"), when)


@pytest.fixture
def transactions(spark):
    rows = [
        tx("A", "1001", "P1", 2, 5.0, TS(2011, 1, 10, 10, 0)),
        tx("A", "1001", "P2", 1, 20.0, TS(2011, 1, 10, 10, 0)),
        tx("A", "C1002", "P1", -1, 5.0, TS(2011, 1, 20, 9, 0)),       # a cancellation: a return
        tx("A", "1003", "P3", 4, 2.5, TS(2011, 1, 31, 23, 59, 59)),   # the last second of the snapshot day
        tx("A", "1004", "P1", 1, 5.0, TS(2011, 2, 1, 0, 0, 0)),       # one second after that
        tx("B", "2001", "P9", 3, 1.0, TS(2011, 1, 5, 12, 0)),         # bought once, never again
        tx("C", "3001", "P1", 1, 5.0, TS(2011, 2, 15, 8, 0)),         # no history at the first snapshot
    ]
    return spark.createDataFrame(rows, TRANSACTION_SCHEMA)


FEATURE_SCHEMA = (
    "customer_id string, snapshot_date date, days_since_last_purchase int, tenure_days int, purchase_count int, "
    "purchase_days int, revenue_total double, revenue_mean double, basket_size_mean double, "
    "distinct_products int, return_ratio double, gap_mean_days double, gap_std_days double, "
    "purchases_30d int, revenue_30d double"
)


def test_features_see_only_their_past(spark, transactions):
    features = compute_features_repurchase_fn(
        transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), windows_days=[30])
    jan, feb = D(2011, 1, 31), D(2011, 2, 28)
    expected = spark.createDataFrame([
        # A at Jan 31: invoices 1001 and 1003 (23:59:59 counts), not 1004; the return is 5 of 40
        ("A", jan, 0, 21, 2, 2, 40.0, 20.0, 3.5, 3, 0.125, 21.0, None, 2, 40.0),
        ("B", jan, 26, 26, 1, 1, 3.0, 3.0, 3.0, 1, 0.0, None, None, 1, 3.0),
        # A at Feb 28: gaps 21 and 1 day -> mean 11, sample std sqrt(200)
        ("A", feb, 27, 49, 3, 3, 45.0, 15.0, 8 / 3, 3, 5 / 45, 11.0, math.sqrt(200.0), 2, 15.0),
        ("B", feb, 54, 54, 1, 1, 3.0, 3.0, 3.0, 1, 0.0, None, None, 0, 0.0),
        # C enters the population only once it has bought
        ("C", feb, 13, 13, 1, 1, 5.0, 5.0, 1.0, 1, 0.0, None, None, 1, 5.0),
    ], FEATURE_SCHEMA)
    assertDataFrameEqual(features, expected, rtol=1e-9)


def test_feature_table_keys_are_unique_and_types_fixed(spark, transactions):
    features = compute_features_repurchase_fn(transactions, "invoice_date", D(2010, 12, 1), D(2011, 3, 31))
    assert features.count() == features.select("customer_id", "snapshot_date").distinct().count()
    types = dict(features.dtypes)
    assert types["snapshot_date"] == "date" and types["purchases_365d"] == "int"
    assert {f"revenue_{days}d" for days in (30, 90, 180, 365)} <= set(features.columns)


def test_a_return_alone_does_not_make_a_customer(spark):
    only_return = spark.createDataFrame([tx("R", "C9", "P1", -1, 5.0, TS(2011, 1, 3))], TRANSACTION_SCHEMA)
    assert compute_features_repurchase_fn(only_return, "invoice_date", D(2011, 1, 31), D(2011, 1, 31)).count() == 0


@pytest.mark.parametrize(
    ("start", "end", "cadence", "expected"),
    [
        (D(2011, 1, 1), D(2011, 3, 31), 1, [D(2011, 1, 31), D(2011, 2, 28), D(2011, 3, 31)]),
        # anchored on the end date; 31 May one month back is 30 April, not 1 May
        (D(2011, 4, 1), D(2011, 5, 31), 1, [D(2011, 4, 30), D(2011, 5, 31)]),
        (D(2011, 1, 1), D(2011, 12, 9), 3, [D(2011, 3, 9), D(2011, 6, 9), D(2011, 9, 9), D(2011, 12, 9)]),
        (D(2012, 1, 1), D(2011, 12, 9), 1, []),
        (D(2011, 12, 9), D(2011, 12, 9), 1, [D(2011, 12, 9)]),
        # a month end stays a month end: 28 Feb 2011 -> 31 Jan, not 28 Jan
        (D(2010, 12, 31), D(2011, 2, 28), 1, [D(2010, 12, 31), D(2011, 1, 31), D(2011, 2, 28)]),
        (D(2011, 1, 1), D(2012, 2, 29), 12, [D(2011, 2, 28), D(2012, 2, 29)]),
    ],
)
def test_snapshot_dates(start, end, cadence, expected):
    assert snapshot_dates(start, end, cadence) == expected


def test_snapshot_cadence_must_be_positive():
    with pytest.raises(ValueError, match="cadence_months"):
        snapshot_dates(D(2011, 1, 1), D(2011, 2, 1), 0)


def test_ltv_features_extend_the_repurchase_features(spark, transactions):
    from clv.features import compute_features_ltv_fn

    base = compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28),
                                          windows_days=[30, 90])
    ltv = compute_features_ltv_fn(transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), windows_days=[30, 90])
    assert ltv.columns == base.columns + ["revenue_per_day", "revenue_share_90d"]
    assertDataFrameEqual(ltv.select(*base.columns), base)
    a_feb = ltv.where("customer_id = 'A' and snapshot_date = '2011-02-28'").first()
    assert a_feb["revenue_per_day"] == pytest.approx(45.0 / 50) and a_feb["revenue_share_90d"] == 1.0


@pytest.mark.parametrize("order", [(0.1, 0.2, 0.3), (0.3, 0.2, 0.1)])
def test_money_sums_do_not_depend_on_row_order(spark, order):
    """Spark sums rows in whatever order partitions arrive; a double sum then differs in its last bits
    from run to run (0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1), and a re-run would write different features."""
    rows = [tx("A", f"10{i}", "P1", 1, price, TS(2011, 1, 10 + i)) for i, price in enumerate(order)]
    features = compute_features_repurchase_fn(spark.createDataFrame(rows, TRANSACTION_SCHEMA).coalesce(1),
                                              "invoice_date", D(2011, 1, 31), D(2011, 1, 31), windows_days=[30])
    row = features.first()
    assert (row["revenue_total"], row["revenue_30d"]) == (0.6, 0.6)


def test_explicit_dates_give_the_same_rows_as_one_call_per_date(spark, transactions):
    """Scoring several arbitrary dates is one pass over the transactions, not one plan per date."""
    from functools import reduce

    dates = [D(2011, 1, 15), D(2011, 1, 31), D(2011, 2, 20)]
    together = compute_features_repurchase_fn(transactions, "invoice_date", dates[0], dates[-1], dates=dates,
                                              windows_days=[30])
    one_by_one = reduce(lambda a, b: a.unionByName(b), [
        compute_features_repurchase_fn(transactions, "invoice_date", d, d, windows_days=[30]) for d in dates])
    assertDataFrameEqual(together, one_by_one)
    assert sorted({row["snapshot_date"] for row in together.collect()}) == dates


def test_explicit_dates_must_lie_between_start_and_end(spark, transactions):
    with pytest.raises(ValueError, match="2011-03-01"):
        compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 1, 1), D(2011, 2, 28),
                                       dates=[D(2011, 3, 1)])


def test_seasonal_features_count_last_years_version_of_the_coming_horizon(spark):
    """At 2011-09-09 with a 90-day window: what was bought on days (2010-09-09, 2010-12-08], the
    horizon being predicted one year earlier; a purchase just outside either end does not count."""
    rows = [
        tx("A", "1", "P1", 1, 10.0, TS(2010, 9, 9, 12, 0)),    # 365 days before: outside
        tx("A", "2", "P1", 2, 10.0, TS(2010, 9, 10, 12, 0)),   # 364 days before: inside
        tx("A", "3", "P1", 1, 7.0, TS(2010, 12, 8, 12, 0)),    # 275 days before: inside
        tx("A", "4", "P1", 1, 5.0, TS(2010, 12, 9, 12, 0)),    # 274 days before: outside
        tx("A", "C5", "P1", -1, 7.0, TS(2010, 12, 1, 12, 0)),  # a return inside: not a purchase
        tx("B", "6", "P1", 1, 5.0, TS(2011, 8, 1, 12, 0)),     # bought only this year
        tx("C", "7", "P1", 1, 5.0, TS(2010, 1, 5, 12, 0)),     # known a year before, did not come back then
    ]
    features = compute_features_repurchase_fn(
        spark.createDataFrame(rows, TRANSACTION_SCHEMA), "invoice_date", D(2011, 9, 9), D(2011, 9, 9),
        windows_days=[30], seasonal_window_days=90, calendar_features=True)
    got = {row["customer_id"]: (row["purchases_last_year_ahead"], row["revenue_last_year_ahead"],
                                row["repurchase_rate_last_year_ahead"], row["snapshot_month"])
           for row in features.collect()}
    # of A and C (B was not a customer yet on 2010-09-09) only A bought in the window: a rate of 1/2 for everyone
    assert got == {"A": (2, 27.0, 0.5, 9), "B": (0, 0.0, 0.5, 9), "C": (0, 0.0, 0.5, 9)}
    plain = compute_features_repurchase_fn(spark.createDataFrame(rows, TRANSACTION_SCHEMA), "invoice_date",
                                           D(2011, 9, 9), D(2011, 9, 9), windows_days=[30])
    assert features.columns == plain.columns + ["purchases_last_year_ahead", "revenue_last_year_ahead",
                                                "repurchase_rate_last_year_ahead", "snapshot_month"]


def test_last_years_rate_is_missing_before_anyone_was_a_customer_for_a_year(spark, transactions):
    features = compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 2, 28), D(2011, 2, 28),
                                              windows_days=[30], seasonal_window_days=90)
    assert {row["repurchase_rate_last_year_ahead"] for row in features.collect()} == {None}


def test_a_seasonal_window_longer_than_a_year_is_refused(spark, transactions):
    with pytest.raises(ValueError, match="seasonal_window_days=400"):
        compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 1, 31), D(2011, 1, 31),
                                       seasonal_window_days=400)


def test_home_country_share_counts_the_customers_purchases_placed_there_up_to_the_snapshot(spark):
    rows = [
        (*tx("A", "1", "P1", 1, 5.0, TS(2011, 1, 3)), "Germany"),
        (*tx("A", "2", "P1", 1, 5.0, TS(2011, 1, 9)), "France"),
        (*tx("A", "2", "P2", 1, 5.0, TS(2011, 1, 9)), "France"),   # one invoice of two lines: one purchase
        (*tx("A", "C3", "P1", -1, 5.0, TS(2011, 1, 12)), "France"),  # a return is not a purchase
        (*tx("A", "4", "P1", 1, 5.0, TS(2011, 1, 20)), "Germany"),
        (*tx("A", "5", "P1", 1, 5.0, TS(2011, 2, 3)), "France"),    # after the January snapshot
        (*tx("F", "6", "P1", 1, 5.0, TS(2011, 1, 5)), "France"),
    ]
    transactions = spark.createDataFrame(rows, TRANSACTION_SCHEMA + ", country string")
    features = compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28),
                                              windows_days=[30], home_country="Germany")
    shares = {(row["customer_id"], row["snapshot_date"]): row["home_country_share"]
              for row in features.select("customer_id", "snapshot_date", "home_country_share").collect()}
    assert shares == {("A", D(2011, 1, 31)): 2 / 3, ("A", D(2011, 2, 28)): 2 / 4,
                      ("F", D(2011, 1, 31)): 0.0, ("F", D(2011, 2, 28)): 0.0}
    assert features.columns[-1] == "home_country_share"
    without = compute_features_repurchase_fn(transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28),
                                             windows_days=[30])
    assert without.columns == features.columns[:-1]  # a single-country model does not see it
