"""Data contracts from config: real Great Expectations validation on Spark DataFrames."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError, DataQualityError
from mlops.quality import validate

SUITE = [
    {"expect_column_values_to_not_be_null": {"column": "customer_id"}},
    {
        "expect_column_values_to_be_between": {"column": "price", "min_value": 0},
        "hint": "negative prices are adjustments",
    },
]


def test_a_good_table_passes(spark):
    df = spark.createDataFrame([("1", 2.0), ("2", 0.0)], "customer_id string, price double")
    validate(df, SUITE, table="t")


def test_a_bad_table_names_the_expectation_the_values_and_the_hint(spark):
    df = spark.createDataFrame([("1", -2.5), (None, 1.0), ("3", -7.0)], "customer_id string, price double")
    with pytest.raises(DataQualityError) as caught:
        validate(df, SUITE, table="dev.clv.clv_transactions_de")
    error = caught.value
    assert error.exit_code == 3 and error.where == "dev.clv.clv_transactions_de"
    assert "2 of 2 expectations failed" in error.message
    assert "negative prices are adjustments" in error.message
    failures = {f["expectation"]: f for f in error.failures}
    assert failures["expect_column_values_to_be_between"]["result"]["unexpected_count"] == 2
    assert sorted(failures["expect_column_values_to_be_between"]["result"]["partial_unexpected_list"]) == [-7.0, -2.5]


def test_a_missing_column_is_reported_not_crashed(spark):
    df = spark.createDataFrame([(1.0,)], "price double")
    with pytest.raises(DataQualityError, match="customer_id"):
        validate(df, SUITE[:1], table="t")


def test_failures_list_only_a_few_values(spark):
    df = spark.createDataFrame([(float(-i),) for i in range(1, 50)], "price double")
    with pytest.raises(DataQualityError) as caught:
        validate(df, SUITE[1:], table="t")
    assert len(caught.value.failures[0]["result"]["partial_unexpected_list"]) <= 5


@pytest.mark.parametrize(
    "entry",
    [
        {"expect_column_values_to_be_nice": {"column": "x"}},
        {"expect_column_values_to_not_be_null": {"column": "x"}, "expect_table_row_count_to_equal": {"value": 1}},
        {"expect_column_values_to_not_be_null": {"column": "x"}, "severity": "low"},
        {"expect_column_values_to_not_be_null": {"colum": "x"}},
    ],
)
def test_malformed_suites_are_config_errors(spark, entry):
    df = spark.createDataFrame([(1,)], "x int")
    with pytest.raises(ConfigError):
        validate(df, [entry], table="t")


@pytest.mark.parametrize("persist", [True, False])
def test_validation_caches_what_it_checks_only_where_the_env_allows(spark, persist):
    # serverless compute refuses DataFrame caching, so Databricks envs validate without it
    df = spark.createDataFrame([("1", 2.0)], "customer_id string, price double")
    validate(df, SUITE, table="t", persist=persist)
    assert df.is_cached is persist
    df.unpersist()


@pytest.mark.parametrize(
    ("message", "first", "cause"),
    [
        (
            "org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading file x.csv.\n"
            "Caused by: [MALFORMED_CSV_RECORD] Malformed CSV record: 12583,Germany,2.55",
            "[MALFORMED_CSV_RECORD] Malformed CSV record",
            "delimiter",
        ),
        (
            "[NUMERIC_VALUE_OUT_OF_RANGE.WITH_SUGGESTION] 1E+40 cannot be represented as Decimal(28, 6)",
            "[NUMERIC_VALUE_OUT_OF_RANGE.WITH_SUGGESTION] 1E+40 cannot be represented as Decimal(28, 6)",
            "too large",
        ),
        ("something odd happened\nat line 2", "something odd happened", "could not compute"),
    ],
)
def test_a_spark_failure_is_shortened_to_its_innermost_error_without_the_record(message, first, cause):
    from mlops.quality import spark_failure

    error, likely = spark_failure(message)
    assert error == first and cause in likely
    assert "12583" not in error  # the record Spark quotes is customer data


def test_spark_failing_during_validation_is_reported_as_such_not_as_failed_expectations(spark, tmp_path):
    source = tmp_path / "broken.csv"
    source.write_text("invoice,price,customer_id\n1,2.5,12583\n2")  # cut mid-line: the last line has one field
    df = spark.read.option("header", "true").option("mode", "FAILFAST").csv(str(source))
    suite = [
        {"expect_table_row_count_to_be_between": {"min_value": 1}, "hint": "the source is empty"},
        {"expect_column_values_to_not_be_null": {"column": "price"}},
    ]
    with pytest.raises(DataQualityError) as caught:
        validate(df, suite, table="csv broken.csv")
    message = caught.value.message
    assert "Spark failed while checking csv broken.csv" in message and "likely cause" in message
    assert "the source is empty" not in message
