"""Point-in-time features on a tiny history that shows every edge case by eye."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.testing import assertDataFrameEqual

from clv.features import (
    FeatureGroup,
    basket,
    calendar,
    compute_feature_groups,
    compute_features_ltv_fn,
    compute_features_repurchase_fn,
    gaps,
    monetary,
    population,
    recency_frequency,
    returns,
    seasonality,
    snapshot_dates,
    trailing_windows,
    value_rates,
)

D = dt.date
TS = dt.datetime
KEYS = ["customer_id", "snapshot_date"]  # the data's names, as use_case.key_columns lists them

TRANSACTION_SCHEMA = (
    "customer_id string, invoice string, stock_code string, quantity int, price double, "
    "revenue double, is_return boolean, invoice_date timestamp"
)


def tx(customer, invoice, stock_code, quantity, price, when):
    return (customer, invoice, stock_code, quantity, price, quantity * price, invoice.startswith("C"), when)


@pytest.fixture
def transactions(spark):
    rows = [
        tx("A", "1001", "P1", 2, 5.0, TS(2011, 1, 10, 10, 0)),
        tx("A", "1001", "P2", 1, 20.0, TS(2011, 1, 10, 10, 0)),
        tx("A", "C1002", "P1", -1, 5.0, TS(2011, 1, 20, 9, 0)),  # a cancellation: a return
        tx("A", "1003", "P3", 4, 2.5, TS(2011, 1, 31, 23, 59, 59)),  # the last second of the snapshot day
        tx("A", "1004", "P1", 1, 5.0, TS(2011, 2, 1, 0, 0, 0)),  # one second after that
        tx("B", "2001", "P9", 3, 1.0, TS(2011, 1, 5, 12, 0)),  # bought once, never again
        tx("C", "3001", "P1", 1, 5.0, TS(2011, 2, 15, 8, 0)),  # no history at the first snapshot
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
        transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), key_columns=KEYS, windows_days=[30]
    )
    jan, feb = D(2011, 1, 31), D(2011, 2, 28)
    expected = spark.createDataFrame(
        [
            # A at Jan 31: invoices 1001 and 1003 (23:59:59 counts), not 1004; the return is 5 of 40
            ("A", jan, 0, 21, 2, 2, 40.0, 20.0, 3.5, 3, 0.125, 21.0, None, 2, 40.0),
            ("B", jan, 26, 26, 1, 1, 3.0, 3.0, 3.0, 1, 0.0, None, None, 1, 3.0),
            # A at Feb 28: gaps 21 and 1 day -> mean 11, sample std sqrt(200)
            ("A", feb, 27, 49, 3, 3, 45.0, 15.0, 8 / 3, 3, 5 / 45, 11.0, math.sqrt(200.0), 2, 15.0),
            ("B", feb, 54, 54, 1, 1, 3.0, 3.0, 3.0, 1, 0.0, None, None, 0, 0.0),
            # C enters the population only once it has bought
            ("C", feb, 13, 13, 1, 1, 5.0, 5.0, 1.0, 1, 0.0, None, None, 1, 5.0),
        ],
        FEATURE_SCHEMA,
    )
    assertDataFrameEqual(features, expected, rtol=1e-9)


def test_feature_table_keys_are_unique_and_types_fixed(spark, transactions):
    features = compute_features_repurchase_fn(
        transactions, "invoice_date", D(2010, 12, 1), D(2011, 3, 31), key_columns=KEYS
    )
    assert features.count() == features.select("customer_id", "snapshot_date").distinct().count()
    types = dict(features.dtypes)
    assert types["snapshot_date"] == "date" and types["purchases_365d"] == "int"
    assert {f"revenue_{days}d" for days in (30, 90, 180, 365)} <= set(features.columns)


def test_a_return_alone_does_not_make_a_customer(spark):
    only_return = spark.createDataFrame([tx("R", "C9", "P1", -1, 5.0, TS(2011, 1, 3))], TRANSACTION_SCHEMA)
    features = compute_features_repurchase_fn(
        only_return, "invoice_date", D(2011, 1, 31), D(2011, 1, 31), key_columns=KEYS
    )
    assert features.count() == 0


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
    base = compute_features_repurchase_fn(
        transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), key_columns=KEYS, windows_days=[30, 90]
    )
    ltv = compute_features_ltv_fn(
        transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), key_columns=KEYS, windows_days=[30, 90]
    )
    assert ltv.columns == base.columns + ["revenue_per_day", "revenue_share_90d"]
    assertDataFrameEqual(ltv.select(*base.columns), base)
    a_feb = ltv.where("customer_id = 'A' and snapshot_date = '2011-02-28'").first()
    assert a_feb["revenue_per_day"] == pytest.approx(45.0 / 50) and a_feb["revenue_share_90d"] == 1.0


@pytest.mark.parametrize("order", [(0.1, 0.2, 0.3), (0.3, 0.2, 0.1)])
def test_money_sums_do_not_depend_on_row_order(spark, order):
    """Spark sums rows in whatever order partitions arrive; a double sum then differs in its last bits
    from run to run (0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1), and a re-run would write different features."""
    rows = [tx("A", f"10{i}", "P1", 1, price, TS(2011, 1, 10 + i)) for i, price in enumerate(order)]
    features = compute_features_repurchase_fn(
        spark.createDataFrame(rows, TRANSACTION_SCHEMA).coalesce(1),
        "invoice_date",
        D(2011, 1, 31),
        D(2011, 1, 31),
        key_columns=KEYS,
        windows_days=[30],
    )
    row = features.first()
    assert (row["revenue_total"], row["revenue_30d"]) == (0.6, 0.6)


def test_explicit_dates_give_the_same_rows_as_one_call_per_date(spark, transactions):
    """Scoring several arbitrary dates is one pass over the transactions, not one plan per date."""
    from functools import reduce

    dates = [D(2011, 1, 15), D(2011, 1, 31), D(2011, 2, 20)]
    together = compute_features_repurchase_fn(
        transactions, "invoice_date", dates[0], dates[-1], key_columns=KEYS, dates=dates, windows_days=[30]
    )
    one_by_one = reduce(
        lambda a, b: a.unionByName(b),
        [
            compute_features_repurchase_fn(transactions, "invoice_date", d, d, key_columns=KEYS, windows_days=[30])
            for d in dates
        ],
    )
    assertDataFrameEqual(together, one_by_one)
    assert sorted({row["snapshot_date"] for row in together.collect()}) == dates


def test_explicit_dates_must_lie_between_start_and_end(spark, transactions):
    with pytest.raises(ValueError, match="2011-03-01"):
        compute_features_repurchase_fn(
            transactions, "invoice_date", D(2011, 1, 1), D(2011, 2, 28), key_columns=KEYS, dates=[D(2011, 3, 1)]
        )


def test_seasonal_features_count_last_years_version_of_the_coming_horizon(spark):
    """At 2011-09-09 with a 90-day window: what was bought on days (2010-09-09, 2010-12-08], the
    horizon being predicted one year earlier; a purchase just outside either end does not count."""
    rows = [
        tx("A", "1", "P1", 1, 10.0, TS(2010, 9, 9, 12, 0)),  # 365 days before: outside
        tx("A", "2", "P1", 2, 10.0, TS(2010, 9, 10, 12, 0)),  # 364 days before: inside
        tx("A", "3", "P1", 1, 7.0, TS(2010, 12, 8, 12, 0)),  # 275 days before: inside
        tx("A", "4", "P1", 1, 5.0, TS(2010, 12, 9, 12, 0)),  # 274 days before: outside
        tx("A", "C5", "P1", -1, 7.0, TS(2010, 12, 1, 12, 0)),  # a return inside: not a purchase
        tx("B", "6", "P1", 1, 5.0, TS(2011, 8, 1, 12, 0)),  # bought only this year
        tx("C", "7", "P1", 1, 5.0, TS(2010, 1, 5, 12, 0)),  # known a year before, did not come back then
    ]
    features = compute_features_repurchase_fn(
        spark.createDataFrame(rows, TRANSACTION_SCHEMA),
        "invoice_date",
        D(2011, 9, 9),
        D(2011, 9, 9),
        key_columns=KEYS,
        windows_days=[30],
        seasonal_window_days=90,
        calendar_features=True,
    )
    got = {
        row["customer_id"]: (
            row["purchases_last_year_ahead"],
            row["revenue_last_year_ahead"],
            row["repurchase_rate_last_year_ahead"],
            row["snapshot_month"],
        )
        for row in features.collect()
    }
    # of A and C (B was not a customer yet on 2010-09-09) only A bought in the window: a rate of 1/2 for everyone
    assert got == {"A": (2, 27.0, 0.5, 9), "B": (0, 0.0, 0.5, 9), "C": (0, 0.0, 0.5, 9)}
    plain = compute_features_repurchase_fn(
        spark.createDataFrame(rows, TRANSACTION_SCHEMA),
        "invoice_date",
        D(2011, 9, 9),
        D(2011, 9, 9),
        key_columns=KEYS,
        windows_days=[30],
    )
    assert features.columns == plain.columns + [
        "purchases_last_year_ahead",
        "revenue_last_year_ahead",
        "repurchase_rate_last_year_ahead",
        "snapshot_month",
    ]


def test_last_years_rate_is_missing_before_anyone_was_a_customer_for_a_year(spark, transactions):
    features = compute_features_repurchase_fn(
        transactions,
        "invoice_date",
        D(2011, 2, 28),
        D(2011, 2, 28),
        key_columns=KEYS,
        windows_days=[30],
        seasonal_window_days=90,
    )
    assert {row["repurchase_rate_last_year_ahead"] for row in features.collect()} == {None}


def test_a_seasonal_window_longer_than_a_year_is_refused(spark, transactions):
    with pytest.raises(ValueError, match="seasonal_window_days=400"):
        compute_features_repurchase_fn(
            transactions, "invoice_date", D(2011, 1, 31), D(2011, 1, 31), key_columns=KEYS, seasonal_window_days=400
        )


def test_home_country_share_counts_the_customers_purchases_placed_there_up_to_the_snapshot(spark):
    rows = [
        (*tx("A", "1", "P1", 1, 5.0, TS(2011, 1, 3)), "Germany"),
        (*tx("A", "2", "P1", 1, 5.0, TS(2011, 1, 9)), "France"),
        (*tx("A", "2", "P2", 1, 5.0, TS(2011, 1, 9)), "France"),  # one invoice of two lines: one purchase
        (*tx("A", "C3", "P1", -1, 5.0, TS(2011, 1, 12)), "France"),  # a return is not a purchase
        (*tx("A", "4", "P1", 1, 5.0, TS(2011, 1, 20)), "Germany"),
        (*tx("A", "5", "P1", 1, 5.0, TS(2011, 2, 3)), "France"),  # after the January snapshot
        (*tx("F", "6", "P1", 1, 5.0, TS(2011, 1, 5)), "France"),
    ]
    transactions = spark.createDataFrame(rows, TRANSACTION_SCHEMA + ", country string")
    features = compute_features_repurchase_fn(
        transactions,
        "invoice_date",
        D(2011, 1, 31),
        D(2011, 2, 28),
        key_columns=KEYS,
        windows_days=[30],
        home_country="Germany",
    )
    shares = {
        (row["customer_id"], row["snapshot_date"]): row["home_country_share"]
        for row in features.select("customer_id", "snapshot_date", "home_country_share").collect()
    }
    assert shares == {
        ("A", D(2011, 1, 31)): 2 / 3,
        ("A", D(2011, 2, 28)): 2 / 4,
        ("F", D(2011, 1, 31)): 0.0,
        ("F", D(2011, 2, 28)): 0.0,
    }
    assert features.columns[-1] == "home_country_share"
    without = compute_features_repurchase_fn(
        transactions, "invoice_date", D(2011, 1, 31), D(2011, 2, 28), key_columns=KEYS, windows_days=[30]
    )
    assert without.columns == features.columns[:-1]  # a single-country model does not see it


# One feature group at a time, on a small shop whose every value is worked out by hand below.
# Snapshots 2011-01-31 and 2011-02-28. Invoice values: A1 = 2 x 5 + 1 x 20 = 30 (3 units), A2 = 5 (1 unit),
# A3 = 4 x 2.5 = 10 (4 units), A5 = 5 (1 unit), B6 = 3 (3 units), Z8 = 0 (1 unit).
JAN, FEB = D(2011, 1, 31), D(2011, 2, 28)


@pytest.fixture
def shop(spark):
    rows = [
        (*tx("A", "1", "P1", 2, 5.0, TS(2011, 1, 1, 10, 0)), "Germany"),
        (*tx("A", "1", "P2", 1, 20.0, TS(2011, 1, 1, 10, 0)), "Germany"),  # one invoice, two lines
        (*tx("A", "2", "P1", 1, 5.0, TS(2011, 1, 1, 15, 0)), "France"),  # a second invoice on the same day
        (*tx("A", "3", "P3", 4, 2.5, TS(2011, 1, 21, 12, 0)), "Germany"),
        (*tx("A", "C4", "P6", -1, 5.0, TS(2011, 1, 25, 12, 0)), "Germany"),  # returns a product it never bought
        (*tx("A", "5", "P4", 1, 5.0, TS(2011, 2, 5, 12, 0)), "France"),
        (*tx("B", "6", "P9", 3, 1.0, TS(2011, 1, 10, 12, 0)), "Germany"),  # bought once
        (*tx("B", "C9", "P9", -1, 1.0, TS(2011, 2, 10, 12, 0)), "France"),  # and returned a third in February
        (*tx("R", "C7", "P1", -1, 5.0, TS(2011, 1, 3, 12, 0)), "Germany"),  # only a return: never in the population
        (*tx("Z", "8", "P5", 1, 0.0, TS(2011, 1, 15, 12, 0)), "France"),  # bought a free item
    ]
    return spark.createDataFrame(rows, TRANSACTION_SCHEMA + ", country string")


def one_group(df, group: FeatureGroup, start=JAN, end=FEB, **kwargs):
    return compute_feature_groups(df, "invoice_date", start, end, key_columns=KEYS, groups=[group], **kwargs)


def expect(spark, schema: str, rows: list[tuple]):
    return spark.createDataFrame(rows, "customer_id string, snapshot_date date, " + schema)


def test_recency_frequency_counts_invoices_and_days_of_purchases_not_returns(spark, shop):
    # A on Jan 31: last purchase Jan 21 (the return on Jan 25 is not one), first Jan 1; 3 invoices on 2 days
    assertDataFrameEqual(
        one_group(shop, recency_frequency()),
        expect(
            spark,
            "days_since_last_purchase int, tenure_days int, purchase_count int, purchase_days int",
            [
                ("A", JAN, 10, 30, 3, 2),
                ("A", FEB, 23, 58, 4, 3),
                ("B", JAN, 21, 21, 1, 1),
                ("B", FEB, 49, 49, 1, 1),
                ("Z", JAN, 16, 16, 1, 1),
                ("Z", FEB, 44, 44, 1, 1),
            ],
        ),
    )


def test_monetary_sums_what_was_bought_and_averages_it_per_invoice(spark, shop):
    # A on Jan 31: 30 + 5 + 10 = 45 over 3 invoices; the returns do not reduce it (that is return_ratio)
    assertDataFrameEqual(
        one_group(shop, monetary()),
        expect(
            spark,
            "revenue_total double, revenue_mean double",
            [
                ("A", JAN, 45.0, 15.0),
                ("A", FEB, 50.0, 12.5),
                ("B", JAN, 3.0, 3.0),
                ("B", FEB, 3.0, 3.0),
                ("Z", JAN, 0.0, 0.0),
                ("Z", FEB, 0.0, 0.0),
            ],
        ),
        rtol=1e-12,
    )


def test_basket_counts_units_per_invoice_and_products_ever_bought(spark, shop):
    # A on Jan 31: 3 + 1 + 4 units over 3 invoices; P1, P2, P3 (P1 twice, the returned P6 never bought); Feb adds P4
    assertDataFrameEqual(
        one_group(shop, basket()),
        expect(
            spark,
            "basket_size_mean double, distinct_products int",
            [
                ("A", JAN, 8 / 3, 3),
                ("A", FEB, 9 / 4, 4),
                ("B", JAN, 3.0, 1),
                ("B", FEB, 3.0, 1),
                ("Z", JAN, 1.0, 1),
                ("Z", FEB, 1.0, 1),
            ],
        ),
        rtol=1e-12,
    )


def test_return_ratio_is_the_returned_share_of_the_purchased_value_and_0_without_value(spark, shop):
    # A: 5 of 45, then 5 of 50; B returns 1 of 3 only after January; Z bought nothing of value: 0, not 0/0
    assertDataFrameEqual(
        one_group(shop, returns()),
        expect(
            spark,
            "return_ratio double",
            [
                ("A", JAN, 5 / 45),
                ("A", FEB, 5 / 50),
                ("B", JAN, 0.0),
                ("B", FEB, 1 / 3),
                ("Z", JAN, 0.0),
                ("Z", FEB, 0.0),
            ],
        ),
        rtol=1e-12,
    )


def test_gaps_are_between_purchase_days(spark, shop):
    # A bought on Jan 1 (twice: one day, not a 0-day gap), Jan 21 and Feb 5: gaps 20, then 20 and 15
    # (mean 17.5, sample variance 2.5^2 + 2.5^2 = 12.5); one purchase day has no gap
    assertDataFrameEqual(
        one_group(shop, gaps()),
        expect(
            spark,
            "gap_mean_days double, gap_std_days double",
            [
                ("A", JAN, 20.0, None),
                ("A", FEB, 17.5, math.sqrt(12.5)),
                ("B", JAN, None, None),
                ("B", FEB, None, None),
                ("Z", JAN, None, None),
                ("Z", FEB, None, None),
            ],
        ),
        rtol=1e-12,
    )


def test_trailing_windows_end_on_the_snapshot_day_and_exclude_their_first_day(spark, shop):
    # On Jan 31, A's Jan 21 purchase is 10 days back (inside 11 and 30), the two Jan 1 invoices 30 days back:
    # outside 30, inside 31. On Feb 28 only Feb 5 (23 days back) is in 30 or 31. B's February return is no purchase
    schema = ", ".join(f"purchases_{days}d int, revenue_{days}d double" for days in (11, 30, 31))
    assertDataFrameEqual(
        one_group(shop, trailing_windows([11, 30, 31])),
        expect(
            spark,
            schema,
            [
                ("A", JAN, 1, 10.0, 1, 10.0, 3, 45.0),
                ("A", FEB, 0, 0.0, 1, 5.0, 1, 5.0),
                ("B", JAN, 0, 0.0, 1, 3.0, 1, 3.0),
                ("B", FEB, 0, 0.0, 0, 0.0, 0, 0.0),
                ("Z", JAN, 0, 0.0, 1, 0.0, 1, 0.0),
                ("Z", FEB, 0, 0.0, 0, 0.0, 0, 0.0),
            ],
        ),
    )


def test_seasonality_counts_last_years_window_and_the_share_of_then_known_customers_who_bought_in_it(spark):
    """30-day window. On 2011-06-30 last year's window is the days (2010-06-30, 2010-07-30], on
    2011-07-31 the days (2010-07-31, 2010-08-30]; the rate's customers are those who had bought
    by 2010-06-30, respectively 2010-07-31."""
    rows = [
        tx("A", "1", "P1", 1, 1.0, TS(2010, 5, 1, 12, 0)),
        tx("A", "2", "P1", 1, 10.0, TS(2010, 7, 15, 12, 0)),  # in June's window (350 days before 2011-06-30)
        tx("A", "3", "P1", 2, 10.0, TS(2010, 8, 10, 12, 0)),  # in July's (355 days before 2011-07-31)
        tx("B", "4", "P1", 1, 3.0, TS(2010, 6, 1, 12, 0)),  # known in both, bought in neither window
        tx("C", "5", "P1", 1, 5.0, TS(2010, 7, 20, 12, 0)),  # in June's window, but not yet known on 2010-06-30
        tx("C", "6", "P1", 1, 7.0, TS(2010, 8, 20, 12, 0)),  # in July's window, known by 2010-07-31
    ]
    jun, jul = D(2011, 6, 30), D(2011, 7, 31)
    features = one_group(spark.createDataFrame(rows, TRANSACTION_SCHEMA), seasonality(30), jun, jul)
    # June: A of the known {A, B} came back: 1/2. July: A and C of {A, B, C}: 2/3
    schema = "purchases_last_year_ahead int, revenue_last_year_ahead double, repurchase_rate_last_year_ahead double"
    assertDataFrameEqual(
        features,
        expect(
            spark,
            schema,
            [
                ("A", jun, 1, 10.0, 1 / 2),
                ("B", jun, 0, 0.0, 1 / 2),
                ("C", jun, 1, 5.0, 1 / 2),
                ("A", jul, 1, 20.0, 2 / 3),
                ("B", jul, 0, 0.0, 2 / 3),
                ("C", jul, 1, 7.0, 2 / 3),
            ],
        ),
        rtol=1e-12,
    )


def test_calendar_is_the_snapshots_month(spark, shop):
    assertDataFrameEqual(
        one_group(shop, calendar()),
        expect(
            spark,
            "snapshot_month int",
            [
                ("A", JAN, 1),
                ("A", FEB, 2),
                ("B", JAN, 1),
                ("B", FEB, 2),
                ("Z", JAN, 1),
                ("Z", FEB, 2),
            ],
        ),
    )


def test_population_share_counts_invoices_placed_from_home(spark, shop):
    # A on Jan 31: invoices 1 and 3 from Germany, 2 from France (the German return is no purchase): 2/3; then 2/4
    assertDataFrameEqual(
        one_group(shop, population("Germany")),
        expect(
            spark,
            "home_country_share double",
            [
                ("A", JAN, 2 / 3),
                ("A", FEB, 2 / 4),
                ("B", JAN, 1.0),
                ("B", FEB, 1.0),
                ("Z", JAN, 0.0),
                ("Z", FEB, 0.0),
            ],
        ),
        rtol=1e-12,
    )


def test_value_rates_divide_by_tenure_plus_one_and_by_the_total(spark, shop):
    # A on Jan 31: 45 over 30 + 1 days, of which 10 (Jan 21) in the last 30 days; Feb 28: 50 / 59, 5 of 50.
    # B on Feb 28 spent nothing in the window; Z's 0 revenue gives a 0 share, not 0/0
    assertDataFrameEqual(
        one_group(shop, value_rates(30)),
        expect(
            spark,
            "revenue_per_day double, revenue_share_30d double",
            [
                ("A", JAN, 45 / 31, 10 / 45),
                ("A", FEB, 50 / 59, 5 / 50),
                ("B", JAN, 3 / 22, 1.0),
                ("B", FEB, 3 / 50, 0.0),
                ("Z", JAN, 0.0, 0.0),
                ("Z", FEB, 0.0, 0.0),
            ],
        ),
        rtol=1e-12,
    )


def test_groups_compose_in_their_order_and_may_not_compute_the_same_column(spark, shop):
    composed = compute_feature_groups(
        shop, "invoice_date", JAN, FEB, key_columns=KEYS, groups=[returns(), calendar(), monetary()]
    )
    assert composed.columns == [*KEYS, "return_ratio", "snapshot_month", "revenue_total", "revenue_mean"]
    with pytest.raises(ValueError, match="'monetary' and 'monetary' both compute 'revenue_total'"):
        compute_feature_groups(shop, "invoice_date", JAN, FEB, key_columns=KEYS, groups=[monetary(), monetary()])


def test_the_keys_are_named_by_key_columns(spark, shop):
    clients = shop.withColumnRenamed("customer_id", "client")
    features = compute_features_repurchase_fn(
        clients, "invoice_date", JAN, FEB, key_columns=["client", "as_of"], windows_days=[30]
    )
    default = compute_features_repurchase_fn(shop, "invoice_date", JAN, FEB, key_columns=KEYS, windows_days=[30])
    assert features.columns == ["client", "as_of", *default.columns[2:]]
    assert features.where("client = 'A' and as_of = '2011-01-31'").first()["days_since_last_purchase"] == 10
    with pytest.raises(ValueError, match="entity, then the snapshot date"):
        compute_features_repurchase_fn(shop, "invoice_date", JAN, FEB, key_columns=["customer_id"])


@pytest.mark.parametrize("model", ["repurchase", "ltv_bucket"])
def test_the_models_feature_and_label_functions_take_the_use_cases_keys(model):
    from hydra.utils import instantiate

    from mlops.config import compose_config

    cfg = compose_config([f"model={model}"])
    keys = list(cfg.use_case.key_columns)
    assert keys == KEYS
    for fn in (cfg.model.features.fn, cfg.model.label.fn):
        assert list(instantiate(fn).keywords["key_columns"]) == keys
