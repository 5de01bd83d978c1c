"""Data contracts from config: real Great Expectations validation on Spark DataFrames."""

from __future__ import annotations

import contextlib
import html
import json
import re
from pathlib import Path

import pytest

from mlops.errors import ConfigError, DataQualityError
from mlops.quality import ValidationRecord, publish, validate

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


def test_a_passing_and_a_failing_validation_both_leave_a_record_for_the_report(spark):
    good = spark.createDataFrame([("1", 2.0)], "customer_id string, price double")
    bad = spark.createDataFrame([("1", -2.5)], "customer_id string, price double")
    records: list[ValidationRecord] = []
    validate(good, SUITE, table="dev.clv.clean", results=records)
    with pytest.raises(DataQualityError):
        validate(bad, SUITE, table="dev.clv.raw", results=records)
    assert [(record.table, record.success) for record in records] == [("dev.clv.clean", True), ("dev.clv.raw", False)]
    assert [result.success for result in records[1].result.results] == [True, False]


def _page_text(path: Path) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", path.read_text())))


def test_publish_writes_each_validation_as_json_and_as_data_docs(spark, tmp_path):
    df = spark.createDataFrame([("1", -2.5), (None, 1.0)], "customer_id string, price double")
    records: list[ValidationRecord] = []
    validate(df, [{"expect_table_row_count_to_be_between": {"min_value": 1}}], table="csv /in/tx.csv", results=records)
    with pytest.raises(DataQualityError):
        validate(df, SUITE, table="csv /in/tx.csv", results=records)

    index = publish(records, tmp_path / "quality")

    # the same table checked twice gets two files; its name's slashes and spaces are no folders
    passed, failed = (
        json.loads((tmp_path / "quality/validations" / name).read_text())
        for name in ("csv_in_tx.csv.json", "csv_in_tx.csv-2.json")
    )
    assert passed["table"] == failed["table"] == "csv /in/tx.csv" and passed["success"] and not failed["success"]
    between = failed["expectations"][1]
    assert between == {
        "expectation": "expect_column_values_to_be_between",
        "success": False,
        "kwargs": {"column": "price", "min_value": 0.0},
        "observed": {
            "element_count": 2,
            "unexpected_count": 1,
            "unexpected_percent": 50.0,
            "partial_unexpected_list": [-2.5],
        },
        "hint": "negative prices are adjustments",
    }
    assert index == tmp_path / "quality/data_docs/index.html" and "csv_in_tx.csv-2" in index.read_text()
    pages = {
        page.relative_to(index.parent).parts[0]: page
        for page in index.parent.rglob("*.html")
        if "-2" in str(page.relative_to(index.parent))  # not in tmp_path's pytest-2N
    }
    validation_page = _page_text(pages["validations"])
    assert "Status: Failed" in validation_page and "values must be greater than or equal to 0.0" in validation_page
    assert "values must never be null" in _page_text(pages["expectations"])


def test_publishing_starts_no_spark_job(spark, tmp_path):
    records: list[ValidationRecord] = []
    validate(spark.createDataFrame([("1", 2.0)], "customer_id string, price double"), SUITE, table="t", results=records)
    tracker = spark.sparkContext.statusTracker()
    jobs = set(tracker.getJobIdsForGroup())
    publish(records * 3, tmp_path)
    assert set(tracker.getJobIdsForGroup()) == jobs


def test_the_failure_report_holds_no_more_values_than_the_error_message(spark, tmp_path):
    df = spark.createDataFrame([(float(-i),) for i in range(1, 50)], "price double")
    records: list[ValidationRecord] = []
    with pytest.raises(DataQualityError) as caught:
        validate(df, SUITE[1:], table="t", results=records)
    publish(records, tmp_path)
    shown = caught.value.failures[0]["result"]["partial_unexpected_list"]
    observed = json.loads((tmp_path / "validations/t.json").read_text())["expectations"][0]["observed"]
    assert observed["partial_unexpected_list"] == shown and len(shown) <= 5
    assert set(observed) <= {"element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list"}
    site = " ".join(_page_text(page) for page in tmp_path.rglob("*.html"))
    unshown = [value for value in (float(-i) for i in range(1, 50)) if value not in shown]
    assert not [value for value in unshown if f" {value} " in site]


def test_customer_ids_reach_the_message_and_the_report_only_as_salted_pseudonyms(spark, tmp_path):
    """A malformed id and a duplicated key: the failures say how many and name each offender by a
    pseudonym that is the same for the same id, never by the id itself."""
    ids = ["48213X7", "55127Q", "12583"]
    df = spark.createDataFrame(
        [
            (ids[0], "2011-01-01", 1.0),
            (ids[1], "2011-01-01", 2.0),
            (ids[2], "2011-01-01", 3.0),
            (ids[2], "2011-01-01", 4.0),
        ],
        "cust string, snapshot_date string, price double",
    )
    suite = [
        {"expect_column_values_to_match_regex": {"column": "cust", "regex": r"^\d+$"}},
        {"expect_compound_columns_to_be_unique": {"column_list": ["cust", "snapshot_date"]}},
        {"expect_column_values_to_be_between": {"column": "price", "max_value": 3.5}},
    ]
    records: list[ValidationRecord] = []
    with pytest.raises(DataQualityError) as caught:
        validate(df, suite, table="t", results=records, private=("cust",))
    publish(records, tmp_path)
    written = caught.value.message + "".join(
        page.read_text(errors="replace") for page in tmp_path.rglob("*") if page.is_file()
    )
    assert not [customer for customer in ids if customer in written]
    failures = {f["expectation"]: f["result"] for f in caught.value.failures}
    assert failures["expect_column_values_to_match_regex"]["unexpected_count"] == 2
    regex_names = failures["expect_column_values_to_match_regex"]["partial_unexpected_list"]
    assert len(regex_names) == 2 and all(re.fullmatch(r"id#[0-9a-f]{10}", name) for name in regex_names)
    duplicates = failures["expect_compound_columns_to_be_unique"]["partial_unexpected_list"]
    assert {row["snapshot_date"] for row in duplicates} == {"2011-01-01"}  # what is not an id stays readable
    assert len({row["cust"] for row in duplicates}) == 1 and duplicates[0]["cust"] not in regex_names
    assert failures["expect_column_values_to_be_between"]["partial_unexpected_list"] == [4.0]  # not an id column
    assert "id#" in caught.value.message


def test_the_report_of_a_spark_failure_keeps_its_error_class_not_the_record_spark_quotes(spark, tmp_path):
    source = tmp_path / "broken.csv"
    source.write_text("invoice,price,customer_id\n1,2.5,12583\n2,secret-7731\n")  # one field short
    df = spark.read.option("header", "true").option("mode", "FAILFAST").csv(str(source))
    records: list[ValidationRecord] = []
    with pytest.raises(DataQualityError, match="Spark failed"):
        validate(df, [{"expect_column_values_to_not_be_null": {"column": "price"}}], table="csv", results=records)
    publish(records, tmp_path / "report")
    errors = json.loads((tmp_path / "report/validations/csv.json").read_text())["expectations"][0]["errors"]
    assert errors and all(error.startswith("[MALFORMED_CSV_RECORD]") for error in errors)
    written = [path.read_text() for path in (tmp_path / "report").rglob("*") if path.suffix in (".json", ".html")]
    assert not [text for text in written if "secret-7731" in text or "Traceback" in text]


def test_load_sample_keeps_its_validation_for_the_stage_report(tmp_path, spark):
    from mlops.runtime import RunContext
    from mlops.stages.load_sample import load_sample
    from tests.conftest import local_config

    ctx = RunContext.from_config(
        local_config(tmp_path / "root", "use_case/source=table", "use_case.source.table=local.raw.clv_source"),
        spark=spark,
    )
    load_sample(ctx)
    assert [(record.table, record.success) for record in ctx.validations] == [
        (f"bundled {ctx.cfg.use_case.sample.package}/{ctx.cfg.use_case.sample.file}", True)
    ]


# Frames and suites where GX's engine and one_pass must agree, expectation by expectation: nulls,
# NaN and infinities, padded and foreign text, duplicate keys with and without nulls, and `mostly`.
_AGREEMENT_CASES = {
    "text": (
        [(" 12 ", "2.5", "x\ufffdy"), ("7", "1e3", "ok"), (None, "abc", None), ("1.5", "-0.25", "fine")],
        "quantity string, price string, country string",
        [
            {"expect_column_values_to_match_regex": {"column": "quantity", "regex": r"^\s*-?\d+\s*$"}},
            {"expect_column_values_to_match_regex": {"column": "quantity", "regex": r"^\s*-?\d+\s*$", "mostly": 0.6}},
            {"expect_column_values_to_match_regex": {"column": "price", "regex": r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?$"}},
            {"expect_column_values_to_not_match_regex": {"column": "country", "regex": "\ufffd"}},
            {"expect_column_values_to_not_match_regex": {"column": "price", "regex": "z"}},
            {"expect_column_values_to_not_be_null": {"column": "country"}},
            {"expect_column_values_to_not_be_null": {"column": "price"}},
            {"expect_table_columns_to_match_set": {"column_set": ["quantity", "price"], "exact_match": False}},
            {"expect_table_columns_to_match_set": {"column_set": ["quantity", "invoice"], "exact_match": False}},
            {"expect_table_row_count_to_be_between": {"min_value": 1}},
            {"expect_table_row_count_to_be_between": {"min_value": 5}},
        ],
    ),
    "numbers": (
        [(2.0, 0), (float("nan"), 3), (float("inf"), -5), (None, 0), (-0.5, 100001), (1.0, None)],
        "price double, quantity int",
        [
            {"expect_column_values_to_be_between": {"column": "price", "min_value": 0}},
            {"expect_column_values_to_be_between": {"column": "price", "max_value": 10000}},
            {"expect_column_values_to_be_between": {"column": "price", "min_value": -1, "max_value": 2}},
            {"expect_column_values_to_be_between": {"column": "price", "min_value": -0.5, "strict_min": True}},
            {"expect_column_values_to_be_between": {"column": "price", "max_value": 2.0, "strict_max": True}},
            {"expect_column_values_to_be_between": {"column": "quantity", "min_value": -1e5, "max_value": 1e5}},
            {"expect_column_values_to_be_between": {"column": "quantity", "min_value": -10, "mostly": 0.7}},
            {"expect_column_values_to_not_be_in_set": {"column": "quantity", "value_set": [0]}},
            {"expect_column_values_to_not_be_in_set": {"column": "quantity", "value_set": [7]}},
            {"expect_column_values_to_be_in_set": {"column": "quantity", "value_set": [0, 3, -5, 100001]}},
            {"expect_column_values_to_be_in_set": {"column": "quantity", "value_set": [0, 3]}},
        ],
    ),
    "keys": (
        [("a", 1), ("a", 1), ("b", None), ("b", None), (None, None), (None, None), ("c", 2), (None, 3)],
        "customer_id string, day int",
        [
            {"expect_compound_columns_to_be_unique": {"column_list": ["customer_id", "day"]}},
            {"expect_compound_columns_to_be_unique": {"column_list": ["customer_id", "day"], "mostly": 0.3}},
            {
                "expect_compound_columns_to_be_unique": {
                    "column_list": ["customer_id", "day"],
                    "ignore_row_if": "any_value_is_missing",
                }
            },
            {"expect_compound_columns_to_be_unique": {"column_list": ["customer_id", "day"], "ignore_row_if": "never"}},
            {"expect_compound_columns_to_be_unique": {"column_list": ["day", "day"], "ignore_row_if": "never"}},
        ],
    ),
    "unique keys": (
        [("a", 1), ("a", 2), ("b", None), (None, None), (None, None)],
        "customer_id string, day int",
        [
            {"expect_compound_columns_to_be_unique": {"column_list": ["customer_id", "day"]}},
            {"expect_column_values_to_not_be_null": {"column": "customer_id", "mostly": 0.5}},
            {"expect_column_values_to_not_be_null": {"column": "customer_id"}},
        ],
    ),
    "empty": (
        [],
        "customer_id string, price double",
        [
            {"expect_table_row_count_to_be_between": {"min_value": 1}},
            {"expect_column_values_to_not_be_null": {"column": "customer_id"}},
            {"expect_column_values_to_be_between": {"column": "price", "min_value": 0}},
            {"expect_compound_columns_to_be_unique": {"column_list": ["customer_id", "price"]}},
        ],
    ),
}


def _verdict(result) -> tuple:
    kwargs = {key: value for key, value in result.expectation_config.kwargs.items() if key != "batch_id"}
    return result.expectation_config.type, kwargs, result.success


@pytest.mark.parametrize("case", sorted(_AGREEMENT_CASES))
def test_the_one_pass_check_agrees_with_the_gx_engine_on_every_expectation(spark, case):
    from mlops.quality import _CHECK_FORMAT, _batch_definition, build_suite, one_pass

    rows, schema, entries = _AGREEMENT_CASES[case]
    df = spark.createDataFrame(rows, schema)
    suite = build_suite(entries, name=case)
    decided = one_pass(df, suite, persist=False)
    assert decided is not None, "every expectation here is one the one-pass check mirrors"
    ours, _ = decided
    theirs = (
        _batch_definition(False)
        .get_batch(batch_parameters={"dataframe": df})
        .validate(suite, result_format=_CHECK_FORMAT)
    )
    verdicts = sorted((_verdict(result) for result in ours.results), key=repr)
    assert verdicts == sorted((_verdict(result) for result in theirs.results), key=repr)
    assert ours.success == theirs.success and ours.statistics == theirs.statistics
    # each case holds a passing and a failing expectation, so agreement is not agreement on all-true
    assert len({verdict for *_, verdict in verdicts}) == 2


def test_the_one_pass_check_is_one_spark_job_where_the_gx_engine_runs_one_per_domain_and_level(spark):
    from pyspark.sql import functions as F

    from mlops.quality import _CHECK_FORMAT, _batch_definition, build_suite, one_pass
    from mlops.spark_jobs import counted

    rows, schema, entries = _AGREEMENT_CASES["text"]
    df = spark.createDataFrame(rows, schema)
    suite = build_suite([entry for entry in entries if "invoice" not in str(entry)], name="text")
    with counted(spark, "one-pass") as ours:
        assert one_pass(df, suite, persist=False) is not None
    with counted(spark, "gx") as theirs:
        _batch_definition(False).get_batch(batch_parameters={"dataframe": df}).validate(
            suite, result_format=_CHECK_FORMAT
        )
    with counted(spark, "one aggregation") as one:  # a map stage and a result stage under adaptive execution
        df.agg(F.count(F.lit(1))).collect()
    assert ours.jobs == one.jobs and theirs.jobs is not None and one.jobs is not None
    assert theirs.jobs > ours.jobs


@pytest.mark.parametrize(
    "entry",
    [
        {"expect_column_mean_to_be_between": {"column": "price", "min_value": 0}},  # a metric it does not mirror
        {
            "expect_column_values_to_not_be_null": {
                "column": "price",
                "row_condition": 'customer_id=="1"',
                "condition_parser": "spark",
            }
        },
        {"expect_column_values_to_be_between": {"column": "customer_id", "min_value": 0}},  # text against a number
    ],
)
def test_what_the_one_pass_check_does_not_mirror_is_left_to_the_gx_engine(spark, entry):
    from mlops.quality import build_suite, one_pass

    df = spark.createDataFrame([("1", 2.0), ("2", -1.0)], "customer_id string, price double")
    assert one_pass(df, build_suite([entry], name="t"), persist=False) is None
    records: list[ValidationRecord] = []
    with contextlib.suppress(DataQualityError):
        validate(df, [entry], table="t", results=records)
    assert len(records) == 1  # GX's engine decided, and its result is kept for the report


@pytest.mark.parametrize("expectation", ["expect_column_values_to_not_be_null", "expect_column_mean_to_be_between"])
def test_a_stage_s_own_measures_come_with_the_check_whichever_engine_decides(spark, expectation):
    # the mean is a metric one_pass leaves to GX's engine: the measures are then computed on their own
    from pyspark.sql import functions as F

    df = spark.createDataFrame([("1", 2.0), (None, -1.0), ("3", 4.0)], "customer_id string, price double")
    args = (
        {"column": "price"}
        if expectation == "expect_column_values_to_not_be_null"
        else {"column": "price", "min_value": 0}
    )
    measured = validate(
        df,
        [{expectation: args}],
        table="t",
        persist=False,
        measures={"rows": F.count(F.lit(1)), "keyless": F.count(F.when(F.col("customer_id").isNull(), 1))},
    )
    assert measured == {"rows": 3, "keyless": 1}
