"""A source in the minimal shape (customer, day, quantity, amount): its contract, its dates, and
training on the features such a source leaves null or constant."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from mlops.config import compose_config, timestamp_regex
from mlops.quality import applicable, validate
from mlops.stages.train import uninformative_features
from tests.test_cleaning import MINIMAL_MAPPING


def source_contract(overrides: list[str]) -> list[dict]:
    return OmegaConf.to_container(compose_config(overrides).use_case.quality.source, resolve=True)


def test_the_source_contract_leaves_out_the_checks_of_unmapped_columns():
    full = applicable(source_contract([]))  # the default mapping: every column but amount
    minimal = applicable(source_contract(MINIMAL_MAPPING))

    def column_set(contract):
        (entry,) = [
            e["expect_table_columns_to_match_set"] for e in contract if "expect_table_columns_to_match_set" in e
        ]
        return sorted(entry["column_set"])

    def checked(contract):
        return sorted(str(next(iter(e.values())).get("column")) for e in contract)

    assert len(column_set(full)) == 8 and "amount" not in column_set(full)
    assert column_set(minimal) == ["Customer ID", "InvoiceDate", "Quantity", "amount"]
    assert checked(minimal) == ["Customer ID", "InvoiceDate", "None", "None", "Quantity", "amount"]
    assert "Invoice" in checked(full) and "Price" in checked(full) and "amount" not in checked(full)


def test_a_minimal_source_passes_its_contract_and_a_bad_amount_fails_it(spark):
    import pytest

    from mlops.errors import DataQualityError

    contract = applicable(source_contract(MINIMAL_MAPPING))
    rows = [("12", "20240131", "2", "10.50"), ("13", "20240201", "-1", "3")]
    good = spark.createDataFrame(rows, "`Customer ID` string, InvoiceDate string, Quantity string, amount string")
    validate(good, contract, table="minimal source")
    bad = spark.createDataFrame(
        [*rows, ("14", "2024-02-01", "1", "ten")],
        "`Customer ID` string, InvoiceDate string, Quantity string, amount string",
    )
    with pytest.raises(DataQualityError) as error:
        validate(bad, contract, table="minimal source")
    assert "amount must be a decimal number" in error.value.message
    assert "invoice dates must match use_case.source.timestamp_format (yyyyMMdd)" in error.value.message


def test_dates_without_separators_match_their_pattern_digit_for_digit():
    """Spark parses adjacent numeric fields by their written widths: 2024131 is not a yyyyMMdd date."""
    regex = re.compile(timestamp_regex("yyyyMMdd"))
    assert regex.match("20240131") and not any(regex.match(v) for v in ("2024131", "202411", "2024-01-31", "240131"))
    assert re.fullmatch(timestamp_regex("yyyyMMddHHmm"), "202401310826")
    assert not re.fullmatch(timestamp_regex("yyyyMMddHHmm"), "20240131826")
    # separated fields: one letter takes one or two digits, two letters exactly two (as Spark parses)
    assert timestamp_regex("dd/MM/yyyy HH:mm") == r"^\d{2}/\d{2}/\d{4}\ \d{2}:\d{2}$"
    assert timestamp_regex("d/M/yyyy H:mm") == r"^\d{1,2}/\d{1,2}/\d{4}\ \d{1,2}:\d{2}$"


def test_null_and_constant_features_are_named_with_why_and_others_kept():
    X = pd.DataFrame(
        {
            "recency": [1.0, 5.0, 9.0],
            "rate_last_year": [np.nan] * 3,  # less than a year of history
            "purchases_last_year": [0.0] * 3,
            "gap_std": [np.nan, 2.0, 2.0],  # one value where known: whether it is known is informative
        }
    )
    assert uninformative_features(X) == {
        "rate_last_year": "entirely null in training",
        "purchases_last_year": "constant in training (always 0)",
    }
