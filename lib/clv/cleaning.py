"""Raw invoice lines -> clean transactions: typed, one country, returns kept as negative revenue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clv.population import country_key
from mlops.errors import ConfigError

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


# canonical source columns (use_case.source.columns): these must be mapped; invoice, stock_code,
# description and country may be null (the source has no such column); exactly one of price and
# amount (a line total) is mapped
REQUIRED_SOURCE_COLUMNS = ("customer_id", "quantity", "invoice_date")
LINE_VALUE_COLUMNS = ("price", "amount")
# what a negative price or amount on a sale (a positive quantity, an invoice not cancelled) is:
# refuse: an accounting adjustment (bad debt, a correction) that the transactions contract refuses,
#   as UCI Online Retail II's "Adjust bad debt" lines with negative prices are
# return: a return of that value, as when a shop books returns by a negative line total
NEGATIVE_VALUES = ("refuse", "return")


def check_negative_value(policy: object) -> None:
    if policy not in NEGATIVE_VALUES:
        raise ConfigError(
            f"use_case.cleaning.fn.negative_value={policy!r} is not a policy for negative prices and amounts",
            where="config key use_case.cleaning.fn.negative_value",
            fix=f"one of {list(NEGATIVE_VALUES)}",
        )


def check_source_columns(columns: Mapping[str, Any], *, country: str | None) -> None:
    """Refuse a column mapping the cleaning cannot work with, before any work (run with the config
    checks by clv.population.CountryPopulation.check): a line needs a customer, a quantity, a date
    and one way to its value, and one country can only be kept from a source that names countries."""
    mapped = {name for name, source_name in columns.items() if source_name is not None}
    missing = [name for name in REQUIRED_SOURCE_COLUMNS if name not in mapped]
    if missing:
        raise ConfigError(
            f"use_case.source.columns maps no source column to {missing}",
            where="config key use_case.source.columns",
            fix="name the source's column for each, e.g. use_case.source.columns.quantity=qty",
        )
    values = [name for name in LINE_VALUE_COLUMNS if name in mapped]
    if len(values) != 1:
        raise ConfigError(
            "exactly one of use_case.source.columns.price (a unit price) and "
            f"use_case.source.columns.amount (a line total) must be set, not {values or 'neither'}",
            where="config key use_case.source.columns",
            fix="e.g. use_case.source.columns.price=null use_case.source.columns.amount=amount for a "
            "source of line totals",
        )
    if country is not None and "country" not in mapped:
        raise ConfigError(
            f"country.source_value={country!r} keeps one country's lines, but use_case.source.columns.country "
            "is null: the source names no country",
            where="config keys country.source_value and use_case.source.columns.country",
            fix="set country.source_value=null to keep every line (one population), or map "
            "use_case.source.columns.country to the source's country column",
        )


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
    negative_value: str = "refuse",
) -> DataFrame:
    """Clean canonical raw columns (strings) for one country (None: every country, a pooled population).

    Countries are matched by `country_match` (country_key); the kept rows carry the configured
    spelling of `country` (pooled: of `home_country`), so later comparisons need no normalising.
    Lines without a customer cannot be attributed to anyone and are dropped. Cancellations stay:
    they are returns, and the return ratio is a feature. Non-product lines (postage, fees) are
    dropped because they say nothing about what a customer buys.

    The columns the source lacks (check_source_columns) are not in `raw_df`: without invoices each
    customer's day is one invoice (invoices are what the features count as purchases); without
    products, descriptions or countries those columns are null; with `amount` (a line total) in
    place of `price` the line's value is the amount and its price the amount per item. A return is
    a cancelled invoice (`return_invoice_prefix`) or a negative quantity. A negative price or
    amount on a sale follows `negative_value` (NEGATIVE_VALUES) in both shapes: refused, it keeps
    its sign in `price` for the transactions contract to report; as a return, it is one.
    """
    check_negative_value(negative_value)
    present = set(raw_df.columns)

    def text(name: str) -> Column:
        return F.trim(F.col(name).cast("string")) if name in present else F.lit(None).cast("string")

    trimmed = raw_df.select(
        customer_key("customer_id").alias("customer_id"),
        *(text(name).alias(name) for name in ("invoice", "stock_code", "quantity", "invoice_date", "country")),
        *(text(name).alias(name) for name in LINE_VALUE_COLUMNS),
        (F.col("description").cast("string") if "description" in present else F.lit(None).cast("string")).alias(
            "description"
        ),
    )
    typed = trimmed.select(
        "customer_id",
        "invoice",
        "stock_code",
        "description",
        _try_cast("quantity", "INT").alias("quantity"),
        _try_cast("price", "DOUBLE").alias("price"),
        _try_cast("amount", "DOUBLE").alias("amount"),
        _parse_timestamp("invoice_date", timestamp_format).alias("invoice_date"),
        "country",
    )
    is_product = F.lit(True)
    if "stock_code" in present:
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
    cancelled = F.col("invoice").startswith(return_invoice_prefix) if "invoice" in present else F.lit(False)
    returned = cancelled | (F.col("quantity") < 0)
    value = "amount" if "amount" in present else "price"
    # An adjustment: a negative unit price on any line (a price has no sign of its own), a
    # negative line total on a line that is otherwise a sale (a return's total may carry the sign)
    adjustment = (F.col(value) < 0) if value == "price" else ~returned & (F.col(value) < 0)
    if negative_value == "return":
        returned, adjustment = returned | (F.col(value) < 0), F.lit(False)
    magnitude, quantity = F.abs(F.col(value)), F.abs(F.col("quantity"))
    if value == "amount":
        line_value, unit = magnitude, F.when(quantity != 0, magnitude / quantity)
    else:
        line_value, unit = quantity * magnitude, magnitude
    # A return's value is negative whichever of quantity and value carried the sign. An
    # adjustment keeps its sign in the price, for the contract (price >= 0) to refuse the line.
    revenue = F.when(returned | adjustment, -line_value).otherwise(line_value)
    price = F.when(adjustment, -unit).otherwise(unit)
    return kept.select(
        "customer_id",
        (F.col("invoice") if "invoice" in present else customer_day_invoice()).alias("invoice"),
        "stock_code",
        "description",
        "quantity",
        price.alias("price"),
        revenue.alias("revenue"),
        returned.alias("is_return"),
        "invoice_date",
        "country",
    )


def customer_day_invoice() -> Column:
    """The invoice of a source without invoices: one per customer and day, named by the day and a
    hash of the customer, since invoices name transactions in error messages
    (use_case.record_column) and customer ids are not for those."""
    day = F.date_format(F.col("invoice_date"), "yyyyMMdd")
    customer = F.substring(F.sha2(F.concat_ws("|", F.col("customer_id"), day), 256), 1, 12)
    return F.concat_ws("-", day, customer)
