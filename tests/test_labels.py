"""Repurchase labels: only the horizon after the snapshot counts, and only once it is observed."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from clv.labels import repurchase_labels

D = dt.date
TS = dt.datetime
SCHEMA = "customer_id string, invoice string, is_return boolean, invoice_date timestamp"
KEYS = ["customer_id", "snapshot_date"]  # the data's names, as use_case.key_columns lists them


def test_repurchase_labels(spark):
    jan, feb = D(2011, 1, 31), D(2011, 2, 28)
    transactions = spark.createDataFrame(
        [
            ("A", "1", False, TS(2011, 1, 31, 23, 59, 59)),  # on the snapshot day: history, not future
            ("A", "2", False, TS(2011, 3, 2, 18, 0)),  # the last day of the 30-day horizon
            ("B", "C3", True, TS(2011, 2, 10, 9, 0)),  # a return is not a purchase
            ("B", "4", False, TS(2011, 3, 3, 9, 0)),  # one day after the horizon
            ("E", "5", False, TS(2011, 2, 1, 0, 0, 0)),  # the first second after the snapshot day
        ],
        SCHEMA,
    )
    population = spark.createDataFrame(
        [("A", jan), ("B", jan), ("E", jan), ("A", feb)], "customer_id string, snapshot_date date"
    )

    labels = repurchase_labels(
        transactions,
        population,
        key_columns=KEYS,
        timestamp_column="invoice_date",
        observed_until=D(2011, 3, 2),
        horizon_days=30,
    )

    # (A, Feb 28) has no label: its horizon ends Mar 30, after the data ends
    expected = spark.createDataFrame(
        [("A", jan, 1), ("B", jan, 0), ("E", jan, 1)], "customer_id string, snapshot_date date, repurchase int"
    )
    assertDataFrameEqual(labels, expected)


def test_label_column_name_comes_from_config(spark):
    population = spark.createDataFrame([("A", D(2011, 1, 31))], "customer_id string, snapshot_date date")
    transactions = spark.createDataFrame([("A", "1", False, TS(2011, 2, 2))], SCHEMA)
    labels = repurchase_labels(
        transactions,
        population,
        key_columns=KEYS,
        timestamp_column="invoice_date",
        observed_until=D(2011, 6, 1),
        horizon_days=7,
        label_column="buys_again",
    )
    assert labels.columns == ["customer_id", "snapshot_date", "buys_again"]
    assert labels.first()["buys_again"] == 1


def test_future_revenue_is_net_of_returns_and_zero_without_purchases(spark):
    from clv.labels import future_revenue_labels

    jan = D(2011, 1, 31)
    transactions = spark.createDataFrame(
        [
            ("A", False, 30.0, TS(2011, 1, 31, 23, 0)),  # before the window
            ("A", False, 50.0, TS(2011, 2, 5)),
            ("A", True, -20.0, TS(2011, 2, 6)),  # a return nets off
            ("A", False, 99.0, TS(2011, 3, 3)),  # after the 30-day window
            ("B", True, -5.0, TS(2011, 2, 2)),  # only a return: negative net revenue
        ],
        "customer_id string, is_return boolean, revenue double, invoice_date timestamp",
    )
    population = spark.createDataFrame([("A", jan), ("B", jan), ("C", jan)], "customer_id string, snapshot_date date")
    labels = future_revenue_labels(
        transactions,
        population,
        key_columns=KEYS,
        timestamp_column="invoice_date",
        observed_until=D(2011, 3, 2),
        horizon_days=30,
    )
    expected = spark.createDataFrame(
        [("A", jan, 30.0), ("B", jan, -5.0), ("C", jan, 0.0)],
        "customer_id string, snapshot_date date, future_revenue double",
    )
    assertDataFrameEqual(labels, expected)


def test_future_revenue_does_not_depend_on_row_order(spark):
    """The label is a sum of money over rows in partition order; it must be exact, not order-dependent."""
    from clv.labels import future_revenue_labels

    jan = D(2011, 1, 31)
    population = spark.createDataFrame([("A", jan)], "customer_id string, snapshot_date date")
    for order in [(0.1, 0.2, 0.3), (0.3, 0.2, 0.1)]:
        transactions = spark.createDataFrame(
            [("A", False, value, TS(2011, 2, 1 + i)) for i, value in enumerate(order)],
            "customer_id string, is_return boolean, revenue double, invoice_date timestamp",
        ).coalesce(1)
        labels = future_revenue_labels(
            transactions,
            population,
            key_columns=KEYS,
            timestamp_column="invoice_date",
            observed_until=D(2011, 3, 2),
            horizon_days=30,
        )
        assert labels.first()["future_revenue"] == 0.6, order


def test_labels_are_keyed_by_key_columns(spark):
    """The population comes from the feature table, keyed as use_case.key_columns says; the labels keep its keys."""
    from clv.labels import future_revenue_labels

    jan = D(2011, 1, 31)
    transactions = spark.createDataFrame(
        [("A", "1", False, 4.0, TS(2011, 2, 2)), ("B", "2", False, 6.0, TS(2011, 2, 3))],
        "client string, invoice string, is_return boolean, revenue double, invoice_date timestamp",
    )
    population = spark.createDataFrame([("A", jan), ("C", jan)], "client string, as_of date")
    keys = ["client", "as_of"]
    repurchase = repurchase_labels(
        transactions,
        population,
        key_columns=keys,
        timestamp_column="invoice_date",
        observed_until=D(2011, 6, 1),
        horizon_days=7,
    )
    revenue = future_revenue_labels(
        transactions,
        population,
        key_columns=keys,
        timestamp_column="invoice_date",
        observed_until=D(2011, 6, 1),
        horizon_days=7,
    )
    # B is not in the population; C is, and bought nothing
    assertDataFrameEqual(
        repurchase, spark.createDataFrame([("A", jan, 1), ("C", jan, 0)], "client string, as_of date, repurchase int")
    )
    assertDataFrameEqual(
        revenue,
        spark.createDataFrame([("A", jan, 4.0), ("C", jan, 0.0)], "client string, as_of date, future_revenue double"),
    )
