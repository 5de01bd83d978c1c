"""TableName validation and the two TableStores: atomic overwrite, history, rollback."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.errors import ConfigError
from mlops.tables import CatalogTableStore, DeltaPathTableStore, TableName, VersionedCatalogTableStore, user_metadata


@pytest.mark.parametrize(
    "bad",
    [
        "x; DROP TABLE y",
        "a.b",
        "a-b",
        "1abc",
        "",
        "t`",
        "../escape",
        "name with space",
        "é",
        "a" * 256,
    ],
)
def test_table_name_rejects_anything_but_identifiers(bad):
    with pytest.raises(ConfigError, match="letters, digits and underscores"):
        TableName.of("dev", "clv", bad)


def test_table_name_renders_and_quotes():
    name = TableName.of("dev", "clv", "clv_features_de")
    assert str(name) == "dev.clv.clv_features_de"
    assert name.quoted == "`dev`.`clv`.`clv_features_de`"


@pytest.fixture(params=["delta_path", "versioned_catalog"])
def store(request, spark, tmp_path):
    """The same contract for local Delta files and for any Spark catalog without Delta."""
    if request.param == "delta_path":
        yield DeltaPathTableStore(spark, tmp_path / "warehouse")
        return
    store = VersionedCatalogTableStore(spark, keep_versions=3)
    schema = f"tables_{uuid.uuid4().hex[:8]}"
    store.name = TableName.of("spark_catalog", schema, "t")
    yield store
    spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


def name_in(store) -> TableName:
    return getattr(store, "name", None) or TableName.of("local", "clv", "t")


def numbers(spark, n, offset=0):
    return spark.range(n).select((F.col("id") + offset).alias("id"), F.lit("x").alias("tag"))


def test_overwrite_replaces_and_keeps_history(spark, store):
    NAME = name_in(store)
    assert not store.exists(NAME) and store.version(NAME) is None
    assert store.overwrite(NAME, numbers(spark, 10)) == 0
    assert store.overwrite(NAME, numbers(spark, 5, offset=100)) == 1
    assertDataFrameEqual(store.read(NAME), numbers(spark, 5, offset=100))
    assert [entry["version"] for entry in store.history(NAME)] == [1, 0]
    if isinstance(store, DeltaPathTableStore):
        assert DeltaTable(str(store.path(NAME))).version() == 1
        # why reads go through the Delta log: the folder still holds the replaced files
        assert spark.read.parquet(str(store.path(NAME))).count() == 15


def test_a_commit_made_inside_user_metadata_carries_its_note_into_the_history(spark, store):
    """How the write journal tells its own versions from anyone else's (mlops.journal)."""
    NAME = name_in(store)
    store.overwrite(NAME, numbers(spark, 3))
    with user_metadata("mlops write unit u1 write"):
        store.overwrite(NAME, numbers(spark, 4))
    store.overwrite(NAME, numbers(spark, 5))
    notes = {entry["version"]: entry.get("userMetadata") for entry in store.history(NAME)}
    assert notes == {2: None, 1: "mlops write unit u1 write", 0: None}
    with pytest.raises(ValueError, match="letters, digits"), user_metadata("u1' ) --"):
        pass  # a note reaches SQL text: anything but plain characters is refused


def test_a_failing_query_leaves_the_table_as_it_was(spark, store):
    NAME = name_in(store)
    store.overwrite(NAME, numbers(spark, 3))
    broken = numbers(spark, 3).select(F.when(F.col("id") == 2, F.raise_error(F.lit("boom"))).alias("id"))
    with pytest.raises(PySparkException, match="boom"):
        store.overwrite(NAME, broken)
    assert store.version(NAME) == 0
    assertDataFrameEqual(store.read(NAME), numbers(spark, 3))
    if isinstance(store, DeltaPathTableStore):  # and the staged result of the failed query is gone
        assert [p for p in store.root.rglob("*") if "staging" in str(p)] == []


def test_a_write_dying_mid_stream_commits_nothing(spark, tmp_path):
    store = DeltaPathTableStore(spark, tmp_path / "warehouse")
    NAME = name_in(store)
    store.overwrite(NAME, numbers(spark, 3))
    schema = pa.schema([("id", pa.int64()), ("tag", pa.string())])

    def batches():
        yield pa.record_batch([pa.array([7, 8]), pa.array(["y", "y"])], schema=schema)
        raise OSError("disk gone")

    with pytest.raises(Exception, match="disk gone"):
        store.overwrite_arrow(NAME, pa.RecordBatchReader.from_batches(schema, batches()))
    assert store.version(NAME) == 0
    assertDataFrameEqual(store.read(NAME), numbers(spark, 3))


def test_restore_and_drop(spark, store):
    NAME = name_in(store)
    store.overwrite(NAME, numbers(spark, 3))
    store.overwrite(NAME, numbers(spark, 4))
    store.restore(NAME, 0)
    assertDataFrameEqual(store.read(NAME), numbers(spark, 3))
    store.restore(NAME, None)
    assert not store.exists(NAME)


def test_an_empty_table_reads_back_with_its_schema(spark, store):
    NAME = name_in(store)
    store.overwrite(NAME, numbers(spark, 3).where(F.lit(False)))
    empty = store.read(NAME)
    assert empty.count() == 0 and empty.columns == ["id", "tag"]


def test_catalog_store_on_the_spark_catalog(spark):
    store = CatalogTableStore(spark)
    name = TableName.of("spark_catalog", "default", "catalog_store_test")
    try:
        assert not store.exists(name)
        store.overwrite(name, numbers(spark, 4))
        store.overwrite(name, numbers(spark, 2, offset=9))
        assert store.exists(name)
        assertDataFrameEqual(store.read(name), numbers(spark, 2, offset=9))
        assert store.version(name) is None  # a plain metastore table has no Delta history
    finally:
        store.restore(name, None)
    assert not store.exists(name)


def test_replace_dates_touches_only_those_dates(spark, store):
    NAME = name_in(store)
    import datetime as dt

    schema = "scoring_date date, customer_id string, score double"
    jan, feb, mar = dt.date(2011, 1, 31), dt.date(2011, 2, 28), dt.date(2011, 3, 31)
    store.replace_dates(
        NAME, spark.createDataFrame([(jan, "a", 0.1), (feb, "a", 0.2)], schema), "scoring_date", [jan, feb]
    )
    store.replace_dates(
        NAME,
        spark.createDataFrame([(feb, "a", 0.9), (feb, "b", 0.8), (mar, "a", 0.3)], schema),
        "scoring_date",
        [feb, mar],
    )
    assertDataFrameEqual(
        store.read(NAME),
        spark.createDataFrame([(jan, "a", 0.1), (feb, "a", 0.9), (feb, "b", 0.8), (mar, "a", 0.3)], schema),
    )
    assert store.version(NAME) == 1
    assert store.rows(NAME) == 4  # the whole table, history dates included


def test_the_rows_written_and_the_schema_come_from_the_delta_log_without_a_spark_job(spark, tmp_path):
    from mlops.spark_jobs import counted

    store = DeltaPathTableStore(spark, tmp_path / "warehouse")
    name = TableName.of("local", "clv", "t")
    store.overwrite(name, numbers(spark, 7))
    store.overwrite(name, numbers(spark, 5))
    with counted(spark, "metadata") as jobs:
        rows, schema = store.rows(name), store.read(name).schema
    assert (rows, jobs.jobs) == (5, 0)
    assert schema == spark.read.parquet(*store._table(name).file_uris()).schema  # what Spark itself would infer


def test_date_predicate_accepts_only_dates_and_identifiers():
    import datetime as dt

    from mlops.tables import date_predicate

    assert date_predicate("scoring_date", [dt.date(2011, 1, 31)]) == "scoring_date IN ('2011-01-31')"
    with pytest.raises(ValueError):
        date_predicate("scoring_date", ["2011-01-31') OR (1=1"])
    with pytest.raises(ConfigError):
        date_predicate("d; DROP", [dt.date(2011, 1, 31)])


def test_versioned_catalog_keeps_only_the_last_versions_and_restores_any_of_them(spark):
    store = VersionedCatalogTableStore(spark, keep_versions=3)
    schema = f"tables_{uuid.uuid4().hex[:8]}"
    name = TableName.of("spark_catalog", schema, "t")
    try:
        for n in range(1, 6):
            assert store.overwrite(name, numbers(spark, n)) == n - 1
        assert [entry["version"] for entry in store.history(name)] == [4, 3, 2]
        store.restore(name, 2)
        assert store.version(name) == 2
        assertDataFrameEqual(store.read(name), numbers(spark, 3))
        # the next write continues after the newest version, not after the restored one
        assert store.overwrite(name, numbers(spark, 7)) == 5
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


def test_versioned_catalog_refuses_a_second_writer_of_the_same_version(spark, monkeypatch):
    """What two concurrent runs would do: both list version 0 and pick 1; the later write fails, the view stays."""
    store = VersionedCatalogTableStore(spark)
    schema = f"tables_{uuid.uuid4().hex[:8]}"
    name = TableName.of("spark_catalog", schema, "t")
    try:
        store.overwrite(name, numbers(spark, 2))
        numbers(spark, 9).write.saveAsTable(f"spark_catalog.{schema}.t__v1")  # the other writer got there first
        monkeypatch.setattr(store, "_versions_present", lambda _: [0])  # this one listed before it did
        with pytest.raises(PySparkException, match="already exists"):
            store.overwrite(name, numbers(spark, 3))
        assert store.version(name) == 0
        assertDataFrameEqual(store.read(name), numbers(spark, 2))
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


def test_delta_writes_never_collect_the_table_to_the_driver(spark, tmp_path, monkeypatch):
    # the Spark executors write the rows; the driver only streams files into the Delta commit,
    # so a 10M-line extract needs no driver memory of its size
    import datetime as dt
    import decimal

    from pyspark.sql.pandas.types import to_arrow_schema

    schema = "customer_id string not null, day date, at timestamp, value decimal(18,2), n int not null, score double"
    rows = [
        ("a", dt.date(2011, 1, 31), dt.datetime(2011, 1, 31, 12, 5), decimal.Decimal("1.25"), 1, 0.5),
        ("b", None, None, None, 2, None),
    ]
    df = spark.createDataFrame(rows, schema)
    expected_schema = to_arrow_schema(df.schema, timezone="UTC")

    def collected(self, *args, **kwargs):
        raise AssertionError("the table was collected to the driver")

    for method in ("toArrow", "toPandas", "collect", "toLocalIterator"):
        monkeypatch.setattr(type(df), method, collected)  # the classic DataFrame, not the base class
    store = DeltaPathTableStore(spark, tmp_path / "warehouse")
    NAME = name_in(store)
    assert store.overwrite(NAME, df) == 0
    assert store.replace_dates(NAME, df.where("day is not null"), "day", [dt.date(2011, 1, 31)]) == 1
    monkeypatch.undo()
    table = DeltaTable(str(store.path(NAME)))
    assert table.to_pyarrow_table().schema.equals(expected_schema), table.to_pyarrow_table().schema
    assertDataFrameEqual(store.read(NAME), df)
    assert sorted(p.name for p in (tmp_path / "warehouse").rglob("*") if "staging" in p.name) == []
