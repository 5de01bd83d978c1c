"""Raw invoice lines -> clean transactions: typed, one country, returns kept as negative revenue."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clv.population import country_key

TRANSACTION_COLUMNS = (
    "customer_id",
    "invoice",
    "stock_code",
    "description",
    "quantity",
    "price",
    "revenue",
    "is_return",
    "invoice_date",
    "country",
)


# Money is summed exactly: a double sum depends on the order rows arrive from partitions, so a
# re-run on the same data would write features and labels that differ in their last bits. Line
# values are rounded to 6 decimals (prices have at most 3) and sums of decimals are exact.
MONEY_TYPE = "decimal(28,6)"


def money(column: str | Column) -> Column:
    """A money column as a decimal, for sums that must not depend on row order."""
    return (F.col(column) if isinstance(column, str) else column).cast(MONEY_TYPE)


def _try_cast(column: str, spark_type: str) -> Column:
    # try_cast yields null instead of failing the job under ANSI mode; the transactions contract
    # then reports the bad values. SQL form: Column.try_cast is missing from older Connect clients.
    return F.expr(f"try_cast(`{column}` AS {spark_type})")


def _parse_timestamp(column: str, timestamp_format: str | None) -> Column:
    if timestamp_format:
        return F.try_to_timestamp(F.col(column), F.lit(timestamp_format))
    return _try_cast(column, "TIMESTAMP")


def customer_key(column: str | Column) -> Column:
    """Customer ids as strings with one spelling per customer.

    Ids stay strings end to end (never parsed as numbers, which would lose the difference
    between ids that are not numbers at all); what is normalised is only how a numeric id is
    written: surrounding whitespace, a spreadsheet's trailing `.0` and leading zeros, so that
    `012426`, `12426` and `12426.0` are the same customer in every table.
    """
    value = F.trim((F.col(column) if isinstance(column, str) else column).cast("string"))
    value = F.regexp_replace(value, r"^(\d+)\.0+$", "$1")
    return F.regexp_replace(value, r"^0+(\d+)$", "$1")  # numeric ids only: `007X` stays as it is


def clean_transactions(
    raw_df: DataFrame,
    *,
    country: str | None,
    country_match: str = "casefold",
    home_country: str | None = None,
    timestamp_format: str | None = None,
    return_invoice_prefix: str = "C",
    non_product_stock_codes: Sequence[str] = (),
    non_product_stock_code_prefixes: Sequence[str] = (),
) -> DataFrame:
    """Clean canonical raw columns (strings) for one country (None: every country, a pooled population).

    Countries are matched by `country_match` (country_key); the kept rows carry the configured
    spelling of `country` (pooled: of `home_country`), so later comparisons need no normalising.
    Lines without a customer cannot be attributed to anyone and are dropped. Cancellations stay:
    they are returns, and the return ratio is a feature. Non-product lines (postage, fees) are
    dropped because they say nothing about what a customer buys.
    """
    trimmed = raw_df.select(
        customer_key("customer_id").alias("customer_id"),
        *(
            F.trim(F.col(name).cast("string")).alias(name)
            for name in ("invoice", "stock_code", "quantity", "price", "invoice_date", "country")
        ),
        F.col("description").cast("string").alias("description"),
    )
    typed = trimmed.select(
        "customer_id",
        "invoice",
        "stock_code",
        "description",
        _try_cast("quantity", "INT").alias("quantity"),
        _try_cast("price", "DOUBLE").alias("price"),
        _parse_timestamp("invoice_date", timestamp_format).alias("invoice_date"),
        "country",
    )
    is_product = ~F.col("stock_code").isin(list(non_product_stock_codes))
    for prefix in non_product_stock_code_prefixes:
        is_product &= ~F.col("stock_code").startswith(prefix)
    of_country = (
        F.lit(True)
        if country is None
        else country_key("country", country_match) == country_key(F.lit(country), country_match)
    )
    spelt = country or home_country
    if spelt is not None:
        typed = typed.withColumn(
            "country",
            F.when(
                country_key("country", country_match) == country_key(F.lit(spelt), country_match), F.lit(spelt)
            ).otherwise(F.col("country")),
        )
    kept = typed.where(of_country & F.col("customer_id").isNotNull() & (F.col("customer_id") != "") & is_product)
    return kept.select(
        "customer_id",
        "invoice",
        "stock_code",
        "description",
        "quantity",
        "price",
        (F.col("quantity") * F.col("price")).alias("revenue"),
        (F.col("invoice").startswith(return_invoice_prefix) | (F.col("quantity") < 0)).alias("is_return"),
        "invoice_date",
        "country",
    )
