"""Cleaning raw invoice lines: what is kept, what is dropped, and how types are fixed."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from clv.cleaning import TRANSACTION_COLUMNS, clean_transactions
from mlops.errors import ConfigError

RAW_SCHEMA = (
    "invoice string, stock_code string, description string, quantity string, invoice_date string, "
    "price string, customer_id string, country string"
)


def clean(df):
    return clean_transactions(
        df, country="Germany", non_product_stock_codes=["POST"], non_product_stock_code_prefixes=["TEST"]
    )


def test_clean_transactions(spark):
    raw = spark.createDataFrame(
        [
            ("536365", "85123A", "HEART", "6", "2010-12-01 08:26:00", "2.55", "12583.0", "Germany"),
            ("C536379", "22556", "CUTLERY", "-2", "2010-12-01 09:41:00", "1.65", " 12583 ", "Germany"),  # a return
            ("536366", "22633", "HAND WARMER", "6", "2010-12-01 08:28", "1.85", None, "Germany"),  # nobody's
            ("536367", "84879", "BIRD", "32", "2010-12-01 08:34:00", "1.69", "13047", "France"),  # not ours
            ("536368", "POST", "POSTAGE", "1", "2010-12-01 08:34:00", "18.00", "12583", "Germany"),  # not a product
            ("536369", "TEST001", "TEST", "1", "2010-12-01 08:35:00", "1.00", "12583", "Germany"),  # not a product
            ("536370", "22728", "ALARM", "x", "someday", "1.00", "12662", "Germany"),  # unparseable
        ],
        RAW_SCHEMA,
    )

    expected = [
        ("12583", "536365", "85123A", "HEART", 6, 2.55, 6 * 2.55, False, dt.datetime(2010, 12, 1, 8, 26), "Germany"),
        ("12583", "C536379", "22556", "CUTLERY", -2, 1.65, -2 * 1.65, True, dt.datetime(2010, 12, 1, 9, 41), "Germany"),
        # kept with nulls: the transactions contract, not cleaning, reports bad values
        ("12662", "536370", "22728", "ALARM", None, 1.0, None, None, None, "Germany"),
    ]
    schema = (
        "customer_id string, invoice string, stock_code string, description string, quantity int, "
        "price double, revenue double, is_return boolean, invoice_date timestamp, country string"
    )
    result = clean(raw)
    assert tuple(result.columns) == TRANSACTION_COLUMNS
    assertDataFrameEqual(result, spark.createDataFrame(expected, schema), rtol=1e-12)


def test_custom_timestamp_format(spark):
    raw = spark.createDataFrame([("1", "A", "d", "1", "01/12/2010 08:26", "1.0", "7", "Germany")], RAW_SCHEMA)
    result = clean_transactions(raw, country="Germany", timestamp_format="dd/MM/yyyy HH:mm")
    assert result.first()["invoice_date"] == dt.datetime(2010, 12, 1, 8, 26)


def test_no_country_keeps_every_country(spark):
    """country=None is the pooled population (every country in the source), e.g. for benchmarks."""
    raw = spark.createDataFrame(
        [
            ("536365", "85123A", "HEART", "6", "2010-12-01 08:26:00", "2.55", "12583", "Germany"),
            ("536367", "84879", "BIRD", "32", "2010-12-01 08:34:00", "1.69", "13047", "France"),
            ("536368", "POST", "POSTAGE", "1", "2010-12-01 08:34:00", "18.00", "12583", "Germany"),
        ],
        RAW_SCHEMA,
    )
    kept = clean_transactions(raw, country=None, non_product_stock_codes=["POST"])
    assert sorted(row["country"] for row in kept.collect()) == ["France", "Germany"]


def test_countries_match_whatever_their_case_and_spaces_and_keep_the_configured_spelling(spark):
    raw = spark.createDataFrame(
        [
            ("1", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "7", "Germany"),
            ("2", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "8", " germany "),
            ("3", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "9", "GERMANY"),
            ("4", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "10", "Germanyy"),
        ],
        RAW_SCHEMA,
    )
    kept = clean_transactions(raw, country="Germany").collect()
    assert sorted(row["invoice"] for row in kept) == ["1", "2", "3"]
    assert {row["country"] for row in kept} == {"Germany"}
    exact = clean_transactions(raw, country="Germany", country_match="exact").collect()
    assert [row["invoice"] for row in exact] == ["1"]


def test_a_pooled_population_spells_its_home_country_as_configured(spark):
    raw = spark.createDataFrame(
        [
            ("1", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "7", "germany"),
            ("2", "A", "d", "1", "2010-12-01 08:26:00", "1.0", "8", "France"),
        ],
        RAW_SCHEMA,
    )
    kept = clean_transactions(raw, country=None, home_country="Germany").collect()
    assert sorted(row["country"] for row in kept) == ["France", "Germany"]


def test_numeric_customer_ids_have_one_spelling_and_other_ids_stay_as_written(spark):
    ids = ["012426", "12426", "12426.0", " 0012426 ", "0", "007X", "A0012"]
    raw = spark.createDataFrame(
        [(str(i), "A", "d", "1", "2010-12-01 08:26:00", "1.0", customer, "Germany") for i, customer in enumerate(ids)],
        RAW_SCHEMA,
    )
    kept = {row["invoice"]: row["customer_id"] for row in clean_transactions(raw, country="Germany").collect()}
    assert [kept[str(i)] for i in range(len(ids))] == ["12426", "12426", "12426", "12426", "0", "007X", "A0012"]


# ------------------------------------------------------------------- a source in the minimal shape
# customer, day (yyyyMMdd), quantity and line total: no invoice, product, description or country
MINIMAL_MAPPING = [
    "use_case.source.columns.invoice=null",
    "use_case.source.columns.stock_code=null",
    "use_case.source.columns.description=null",
    "use_case.source.columns.country=null",
    "use_case.source.columns.price=null",
    "use_case.source.columns.amount=amount",
    "use_case.source.timestamp_format=yyyyMMdd",
    "country.source_value=null",
]


def minimal(spark, rows):
    return spark.createDataFrame(rows, "customer_id string, invoice_date string, quantity string, amount string")


def test_a_source_without_invoices_has_one_invoice_per_customer_and_day(spark):
    raw = minimal(
        spark,
        [
            ("7", "20240131", "2", "10.00"),
            ("7", "20240131", "1", "4.50"),  # the same day: the same invoice
            ("7", "20240201", "1", "4.50"),
            ("8", "20240131", "3", "9.00"),  # another customer, the same day: another invoice
        ],
    )
    kept = clean_transactions(raw, country=None, timestamp_format="yyyyMMdd").collect()
    invoices = {(row["customer_id"], row["invoice_date"].date()): row["invoice"] for row in kept}
    assert len(kept) == 4 and len(set(invoices.values())) == 3
    assert [row["invoice"] for row in kept[:2]] == [invoices["7", dt.date(2024, 1, 31)]] * 2
    # named by the day, the customer only by a hash: invoices name lines in error messages
    assert re.fullmatch(r"20240131-[0-9a-f]{12}", invoices["7", dt.date(2024, 1, 31)])
    again = clean_transactions(raw, country=None, timestamp_format="yyyyMMdd").collect()
    assert [row["invoice"] for row in again] == [row["invoice"] for row in kept]


LINE_FIGURES = (
    "customer_id string, quantity int, price double, revenue double, is_return boolean, invoice_date timestamp"
)


def test_a_line_total_is_the_revenue_and_its_price_per_item(spark):
    raw = minimal(
        spark,
        [
            ("7", "20240131", "4", "10.00"),
            ("7", "20240205", "-1", "2.50"),  # a return by its quantity
            ("7", "20240207", "-1", "-2.50"),  # a return whose total carries the sign too
            ("7", "20240206", "1", "-2.50"),  # a sale of negative value: an adjustment, or a return
        ],
    )
    kept = [
        ("7", 4, 2.5, 10.0, False, dt.datetime(2024, 1, 31)),
        ("7", -1, 2.5, -2.5, True, dt.datetime(2024, 2, 5)),
        ("7", -1, 2.5, -2.5, True, dt.datetime(2024, 2, 7)),
    ]
    result = clean_transactions(raw, country=None, timestamp_format="yyyyMMdd")
    assert tuple(result.columns) == TRANSACTION_COLUMNS
    # refused by default, as a negative unit price is: the sign stays in the price for the contract
    assertDataFrameEqual(
        result.select("customer_id", "quantity", "price", "revenue", "is_return", "invoice_date"),
        spark.createDataFrame([*kept, ("7", 1, -2.5, -2.5, False, dt.datetime(2024, 2, 6))], LINE_FIGURES),
    )
    as_returns = clean_transactions(raw, country=None, timestamp_format="yyyyMMdd", negative_value="return")
    assertDataFrameEqual(
        as_returns.select("customer_id", "quantity", "price", "revenue", "is_return", "invoice_date"),
        spark.createDataFrame([*kept, ("7", 1, 2.5, -2.5, True, dt.datetime(2024, 2, 6))], LINE_FIGURES),
    )


def test_a_negative_unit_price_follows_the_same_policy_as_a_negative_total(spark):
    raw = spark.createDataFrame(
        [("7", "A1", "2", "3.00"), ("7", "A2", "1", "-11062.06"), ("7", "C3", "-1", "3.00")],
        "customer_id string, invoice string, quantity string, price string",
    ).withColumn("invoice_date", F.lit("2011-01-05 10:00:00"))
    refused = clean_transactions(raw, country=None)
    returned = clean_transactions(raw, country=None, negative_value="return")
    figures = ["quantity", "price", "revenue", "is_return"]
    assert [tuple(r) for r in refused.select(figures).collect()] == [
        (2, 3.0, 6.0, False),
        (1, -11062.06, -11062.06, False),
        (-1, 3.0, -3.0, True),
    ]
    assert [tuple(r) for r in returned.select(figures).collect()][1] == (1, 11062.06, -11062.06, True)
    with pytest.raises(ConfigError, match="negative_value='drop' is not a policy") as raised:
        clean_transactions(raw, country=None, negative_value="drop")
    assert raised.value.where == "config key use_case.cleaning.fn.negative_value"


def test_columns_the_source_lacks_are_typed_nulls_and_every_country_is_kept(spark):
    raw = minimal(spark, [("7", "20240131", "4", "10.00")])
    result = clean_transactions(
        raw,
        country=None,
        timestamp_format="yyyyMMdd",
        non_product_stock_codes=["POST"],
        non_product_stock_code_prefixes=["TEST"],
    )
    assert (
        dict(result.dtypes)["stock_code"]
        == dict(result.dtypes)["description"]
        == dict(result.dtypes)["country"]
        == "string"
    )
    row = result.first()
    assert (row["stock_code"], row["description"], row["country"]) == (None, None, None)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            ["use_case.source.columns.country=null"],
            ("country.source_value='Germany'", "use_case.source.columns.country"),
        ),
        (["use_case.source.columns.amount=amount"], ("exactly one of use_case.source.columns.price",)),
        (["use_case.source.columns.price=null"], ("exactly one of", "neither")),
        (["use_case.source.columns.quantity=null"], ("maps no source column to ['quantity']",)),
        (
            ["use_case.cleaning.fn.negative_value=drop"],
            ("negative_value='drop' is not a policy", "['refuse', 'return']"),
        ),
    ],
)
def test_a_column_mapping_the_cleaning_cannot_use_is_a_config_error(overrides, says):
    from mlops.config import compose_config, validate_config

    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(overrides))
    assert all(text in error.value.message for text in says), error.value.message
    assert error.value.exit_code == 2


def test_the_minimal_mapping_is_valid_with_every_country_kept():
    from mlops.config import compose_config, validate_config

    validate_config(compose_config(MINIMAL_MAPPING))
