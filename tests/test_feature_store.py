"""Feature tables in two worlds: one contract for LocalFeatureStore (real local Delta) and
DatabricksFeatureStore (on the faithful fake of databricks-feature-engineering), then the adapter's
calls, the fake's own SDK rules, and choosing the world from config.
"""

from __future__ import annotations

import datetime as dt
import inspect
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.errors import PySparkException
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.config import compose_config
from mlops.errors import ConfigError, DataQualityError
from mlops.feature_store import (
    DatabricksFeatureStore,
    FeatureLookupSpec,
    FeatureTableSpec,
    LocalFeatureStore,
    UnityCatalogFeatureTables,
    make_feature_store,
)
from mlops.tables import DeltaPathTableStore, TableName, user_metadata
from tests.fakes import databricks_feature_engineering as fake_fe
from tests.fakes.databricks_feature_engineering import (
    FakeDeltaError,
    FakeFeatureEngineeringClient,
    FakeFeatureLookup,
    FakeTrainingSet,
    FakeUnityCatalog,
)

D = dt.date
FEATURE_SCHEMA = "customer_id string, snapshot_date date, purchase_count int, revenue_total double"
LABEL_SCHEMA = "customer_id string, snapshot_date date, repurchase int"
KEYS = ("customer_id", "snapshot_date")


@dataclass
class World:
    kind: str
    store: Any
    tables: Any
    catalog: str
    uc: FakeUnityCatalog | None = None

    def name(self, table: str = "clv_features_de") -> TableName:
        return TableName.of(self.catalog, "clv", table)

    def spec(self, table: str = "clv_features_de") -> FeatureTableSpec:
        return FeatureTableSpec.from_key_columns(self.name(table), KEYS, "CLV features per customer and snapshot")


@pytest.fixture(params=["local", "databricks"])
def world(request, spark, tmp_path) -> World:
    if request.param == "local":
        tables = DeltaPathTableStore(spark, tmp_path / "warehouse")
        return World("local", LocalFeatureStore(spark, tables), tables, "local")
    uc = FakeUnityCatalog(spark, tmp_path / "unity_catalog")
    store = DatabricksFeatureStore(uc.tables, client=uc.client(), feature_lookup=FakeFeatureLookup)
    return World("databricks", store, uc.tables, "dev", uc)


@pytest.fixture
def uc(spark, tmp_path) -> FakeUnityCatalog:
    return FakeUnityCatalog(spark, tmp_path / "unity_catalog")


def history(spark):
    """Customer A has monthly rows; B only a row after some label dates; C has none."""
    return spark.createDataFrame(
        [
            ("A", D(2011, 1, 31), 1, 10.0),
            ("A", D(2011, 2, 28), 2, 25.0),
            ("A", D(2011, 3, 31), 3, 40.0),
            ("B", D(2011, 2, 28), 1, 5.0),
        ],
        FEATURE_SCHEMA,
    )


def loaded(world: World, spark) -> TableName:
    spec = world.store.ensure_table(world.spec(), history(spark).schema)
    world.store.truncate_and_load(spec.name, history(spark))
    return spec.name


def lookup(name: TableName, feature_names=("purchase_count", "revenue_total")) -> FeatureLookupSpec:
    return FeatureLookupSpec(name, ("customer_id",), "snapshot_date", feature_names)


# --- the contract: the same behaviour in both worlds -----------------------------------------


def test_ensure_is_idempotent_and_keeps_the_keys(world, spark):
    spec = world.spec()
    assert world.store.table_spec(spec.name) is None
    first = world.store.ensure_table(spec, history(spark).schema)
    world.store.truncate_and_load(spec.name, history(spark))
    version = world.tables.version(spec.name)
    again = world.store.ensure_table(spec, history(spark).schema)
    assert first.same_keys(spec) and again.same_keys(spec)
    reported = world.store.table_spec(spec.name)
    assert set(reported.primary_keys) == set(KEYS) and reported.timestamp_key == "snapshot_date"
    assert reported.entity_keys == ("customer_id",)
    assert world.tables.version(spec.name) == version  # ensuring again writes nothing
    assertDataFrameEqual(world.tables.read(spec.name), history(spark))


def test_ensure_refuses_other_keys_for_an_existing_feature_table(world, spark):
    name = loaded(world, spark)
    other = FeatureTableSpec(name, ("customer_id", "purchase_count", "snapshot_date"), "snapshot_date")
    with pytest.raises(ConfigError, match="already a feature table with primary keys"):
        world.store.ensure_table(other, history(spark).schema)


def test_ensure_checks_the_keys_are_columns_and_the_timestamp_key_is_a_date(world, spark):
    with pytest.raises(ConfigError, match=r"key columns \['snapshot_date'\]"):
        world.store.ensure_table(world.spec(), history(spark).drop("snapshot_date").schema)
    as_text = history(spark).withColumn("snapshot_date", F.col("snapshot_date").cast("string"))
    with pytest.raises(ConfigError, match="not a date or timestamp"):
        world.store.ensure_table(world.spec(), as_text.schema)
    assert world.store.table_spec(world.name()) is None


def test_truncate_and_load_replaces_every_row_and_the_previous_version_stays_restorable(world, spark):
    name = loaded(world, spark)
    before = world.tables.version(name)
    replacement = spark.createDataFrame([("Z", D(2011, 4, 30), 7, 70.0)], FEATURE_SCHEMA)
    version = world.store.truncate_and_load(name, replacement)
    assert version == world.tables.version(name) and version > before
    assertDataFrameEqual(world.tables.read(name), replacement)  # no row of the old load survives
    world.tables.restore(name, before)
    assertDataFrameEqual(world.tables.read(name), history(spark))
    assert world.store.table_spec(name).same_keys(world.spec())  # still a feature table after a restore


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("A", D(2011, 1, 31), 9, 99.0), "not unique"),  # a second row for A at Jan 31
        ((None, D(2011, 1, 31), 9, 99.0), "null primary key"),
        (("A", None, 9, 99.0), "null primary key"),
    ],
)
def test_a_load_with_bad_keys_writes_nothing(world, spark, row, problem):
    name = loaded(world, spark)
    version = world.tables.version(name)
    bad = history(spark).unionByName(spark.createDataFrame([row], FEATURE_SCHEMA))
    with pytest.raises(DataQualityError, match=problem) as caught:
        world.store.truncate_and_load(name, bad)
    assert caught.value.failures and caught.value.where == f"feature table {name}"
    assert world.tables.version(name) == version
    assertDataFrameEqual(world.tables.read(name), history(spark))


def test_a_load_whose_query_fails_leaves_the_previous_contents(world, spark):
    name = loaded(world, spark)
    version = world.tables.version(name)
    broken = history(spark).withColumn(
        "revenue_total",
        F.when(F.col("purchase_count") == 3, F.raise_error(F.lit("executor lost"))).otherwise(F.col("revenue_total")),
    )
    with pytest.raises(PySparkException, match="executor lost"):
        world.store.truncate_and_load(name, broken)
    assert world.tables.version(name) == version
    assertDataFrameEqual(world.tables.read(name), history(spark))


def test_loading_a_table_that_is_not_a_feature_table_is_a_config_error(world, spark):
    with pytest.raises(ConfigError, match="is not a feature table"):
        world.store.truncate_and_load(world.name(), history(spark))
    assert not world.tables.exists(world.name())


def test_point_in_time_lookup_takes_the_latest_row_at_or_before_the_label_time(world, spark):
    name = loaded(world, spark)
    labels = spark.createDataFrame(
        [
            ("A", D(2011, 2, 15), 1),  # between Jan 31 and Feb 28: Jan 31's row, never Feb 28's
            ("A", D(2011, 2, 15), 0),  # the same key and time twice: both rows stay
            ("A", D(2011, 2, 28), 0),  # exactly on a snapshot: that snapshot
            ("A", D(2011, 12, 31), 1),  # after the last snapshot: the last one
            ("B", D(2011, 1, 31), 0),  # B's only row is later: nulls
            ("C", D(2011, 2, 28), 1),  # no rows at all: nulls
            (None, D(2011, 2, 28), 0),  # no key: nulls, and the row is kept
        ],
        LABEL_SCHEMA,
    )
    training = world.store.create_training_set(labels, [lookup(name)], label="repurchase").load_df()
    expected = spark.createDataFrame(
        [
            ("A", D(2011, 2, 15), 1, 10.0, 1),
            ("A", D(2011, 2, 15), 1, 10.0, 0),
            ("A", D(2011, 2, 28), 2, 25.0, 0),
            ("A", D(2011, 12, 31), 3, 40.0, 1),
            ("B", D(2011, 1, 31), None, None, 0),
            ("C", D(2011, 2, 28), None, None, 1),
            (None, D(2011, 2, 28), None, None, 0),
        ],
        "customer_id string, snapshot_date date, purchase_count int, revenue_total double, repurchase int",
    )
    assertDataFrameEqual(training, expected)
    assert training.columns == expected.columns  # labels' columns, features, then the label


def test_exact_snapshot_labels_give_what_the_inner_join_gave(world, spark):
    name = loaded(world, spark)
    labels = spark.createDataFrame(
        [("A", D(2011, 1, 31), 1), ("A", D(2011, 3, 31), 0), ("B", D(2011, 2, 28), 1)], LABEL_SCHEMA
    )
    training = world.store.create_training_set(labels, [lookup(name)], label="repurchase").load_df()
    inner = world.tables.read(name).join(labels, list(KEYS), "inner")
    assertDataFrameEqual(training, inner)
    assert training.columns == inner.columns


def test_all_features_come_alphabetically_and_excluded_columns_are_dropped(world, spark):
    name = loaded(world, spark)
    labels = spark.createDataFrame([("A", D(2011, 1, 31), 1)], LABEL_SCHEMA).withColumn("weight", F.lit(2.0))
    training_set = world.store.create_training_set(
        labels, [lookup(name, feature_names=None)], label="repurchase", exclude_columns=["weight", "customer_id"]
    )
    assert training_set.load_df().columns == ["snapshot_date", "purchase_count", "revenue_total", "repurchase"]
    with pytest.raises(ConfigError, match="cannot be excluded"):
        world.store.create_training_set(labels, [lookup(name)], label="repurchase", exclude_columns=["repurchase"])


def test_a_lookup_or_label_column_missing_from_the_labels_is_a_config_error(world, spark):
    name = loaded(world, spark)
    labels = spark.createDataFrame([("A", D(2011, 1, 31), 1)], LABEL_SCHEMA)
    with pytest.raises(ConfigError, match=r"lookup columns \['snapshot_date'\]"):
        world.store.create_training_set(labels.drop("snapshot_date"), [lookup(name)], label="repurchase")
    with pytest.raises(ConfigError, match="label column 'churn'"):
        world.store.create_training_set(labels, [lookup(name)], label="churn")


def test_the_local_store_adopts_a_table_written_before_feature_tables(spark, tmp_path):
    tables = DeltaPathTableStore(spark, tmp_path / "warehouse")
    store = LocalFeatureStore(spark, tables)
    name = TableName.of("local", "clv", "f")
    tables.overwrite(name, history(spark))  # a features table from before this store existed
    with pytest.raises(ConfigError, match="run the features stage"):
        store.create_training_set(spark.createDataFrame([], LABEL_SCHEMA), [lookup(name)], label="repurchase")
    store.ensure_table(FeatureTableSpec.from_key_columns(name, KEYS), history(spark).schema)
    assert tables.version(name) == 0  # adopting writes only the keys beside the table
    labels = spark.createDataFrame([("A", D(2011, 3, 1), 1)], LABEL_SCHEMA)
    (row,) = store.create_training_set(labels, [lookup(name)], label="repurchase").load_df().collect()
    assert (row["purchase_count"], row["revenue_total"]) == (2, 25.0)


# --- the adapter: what it asks of the SDK ----------------------------------------------------


def adapter(uc: FakeUnityCatalog) -> DatabricksFeatureStore:
    return DatabricksFeatureStore(uc.tables, client=uc.client(), feature_lookup=FakeFeatureLookup)


def test_the_adapter_creates_the_table_once_from_a_schema_with_its_keys(uc, spark):
    store = adapter(uc)
    spec = FeatureTableSpec.from_key_columns(TableName.of("dev", "clv", "f"), KEYS, "features")
    store.ensure_table(spec, history(spark).schema)
    store.ensure_table(spec, history(spark).schema)
    created = uc.calls_to("create_table")
    assert len(created) == 1
    assert created[0]["name"] == "dev.clv.f"
    assert created[0]["primary_keys"] == ["customer_id", "snapshot_date"]
    assert created[0]["timeseries_column"] == "snapshot_date"
    assert created[0]["schema"] == history(spark).schema and created[0]["df"] is None
    assert created[0]["description"] == "features"
    assert uc.calls_to("get_table")  # the second ensure checked the existing table's keys


def test_the_adapter_loads_without_losing_the_primary_key_constraint(uc, spark):
    store = adapter(uc)
    spec = FeatureTableSpec.from_key_columns(TableName.of("dev", "clv", "f"), KEYS)
    store.ensure_table(spec, history(spark).schema)
    store.truncate_and_load(spec.name, history(spark))
    table = uc.client().get_table(name="dev.clv.f")
    assert table.primary_keys == ["customer_id", "snapshot_date"] and table.timestamp_keys == ["snapshot_date"]
    assert not uc.calls_to("write_table")  # merge would keep rows a truncate-and-load must drop


def test_the_adapter_passes_lookups_as_sdk_feature_lookups(uc, spark):
    store = adapter(uc)
    name = TableName.of("dev", "clv", "f")
    store.ensure_table(FeatureTableSpec.from_key_columns(name, KEYS), history(spark).schema)
    store.truncate_and_load(name, history(spark))
    labels = spark.createDataFrame([("A", D(2011, 1, 31), 1)], LABEL_SCHEMA)
    training_set = store.create_training_set(
        labels, [lookup(name)], label="repurchase", exclude_columns=["customer_id"]
    )
    assert isinstance(training_set, FakeTrainingSet)
    call = uc.calls_to("create_training_set")[0]
    assert call["df"] is labels and call["label"] == "repurchase" and call["exclude_columns"] == ["customer_id"]
    (sdk_lookup,) = call["feature_lookups"]
    assert isinstance(sdk_lookup, FakeFeatureLookup)
    assert (
        sdk_lookup.table_name,
        sdk_lookup.lookup_key,
        sdk_lookup.timestamp_lookup_key,
        sdk_lookup.feature_names,
    ) == ("dev.clv.f", ["customer_id"], "snapshot_date", ["purchase_count", "revenue_total"])


def test_the_adapter_builds_its_client_from_the_sdk_on_first_use(uc, spark, monkeypatch):
    fake_fe.install(monkeypatch, uc)
    store = DatabricksFeatureStore(uc.tables)
    assert uc.calls == []  # building the store asks nothing of the SDK
    store.ensure_table(FeatureTableSpec.from_key_columns(TableName.of("dev", "clv", "f"), KEYS), history(spark).schema)
    assert [name for name, _ in uc.calls][:2] == ["__init__", "create_table"]
    assert store.feature_lookup is FakeFeatureLookup


def test_without_the_sdk_the_adapter_says_what_to_install(uc, spark, monkeypatch):
    fake_fe.uninstall(monkeypatch)
    store = DatabricksFeatureStore(uc.tables)  # no error yet: a stage may never touch a feature table
    with pytest.raises(ConfigError) as caught:
        store.ensure_table(
            FeatureTableSpec.from_key_columns(TableName.of("dev", "clv", "f"), KEYS), history(spark).schema
        )
    assert "not installed" in caught.value.what
    assert "databricks-feature-engineering" in caught.value.where
    assert "Databricks Runtime ML" in caught.value.fix


def test_an_existing_table_without_a_primary_key_gets_the_alter_table_fix(uc, spark):
    name = TableName.of("dev", "clv", "f")
    uc.create_plain_table(name, history(spark))
    with pytest.raises(ConfigError, match="not a feature table") as caught:
        adapter(uc).ensure_table(FeatureTableSpec.from_key_columns(name, KEYS), history(spark).schema)
    assert "PRIMARY KEY (customer_id, snapshot_date TIMESERIES)" in caught.value.fix
    assert not uc.calls_to("create_table")


def test_the_unity_catalog_store_overwrites_without_overwrite_schema(spark, monkeypatch):
    """What runs on Databricks, where Delta and Unity Catalog are (not here): a real DataFrame, and a
    stand-in for its writer at the Delta boundary, to pin the write options that keep the table's schema."""
    written: list[tuple[str, dict[str, str], str, str]] = []

    class DeltaWriter:
        def __init__(self):
            self.options, self.kind, self.how = {}, None, None

        def format(self, kind):
            self.kind = kind
            return self

        def mode(self, how):
            self.how = how
            return self

        def option(self, key, value):
            self.options[key] = value
            return self

        def saveAsTable(self, name):
            written.append((name, self.options, self.kind, self.how))

    frame = history(spark)
    monkeypatch.setattr(type(frame), "write", property(lambda self: DeltaWriter()))
    store = UnityCatalogFeatureTables(spark)
    monkeypatch.setattr(store, "exists", lambda name: True)
    monkeypatch.setattr(store, "version", lambda name: 7)
    assert store.overwrite(TableName.of("dev", "clv", "f"), frame) == 7
    assert written == [("`dev`.`clv`.`f`", {"mergeSchema": "true"}, "delta", "overwrite")]
    with user_metadata("mlops write unit u1 write"):  # a write unit's commit names the unit (mlops.journal)
        store.overwrite(TableName.of("dev", "clv", "f"), frame)
    assert written[-1][1] == {"mergeSchema": "true", "userMetadata": "mlops write unit u1 write"}


# --- the fake keeps the SDK's signatures and rules -------------------------------------------


def _signature(function) -> str:
    """`inspect.signature` without `self` and annotations, in REAL_SIGNATURES' notation."""
    parameters = [
        parameter.replace(annotation=inspect.Parameter.empty)
        for name, parameter in inspect.signature(function).parameters.items()
        if name != "self"
    ]
    return str(inspect.Signature(parameters))


FAKE_CLASSES = {
    "FeatureEngineeringClient": FakeFeatureEngineeringClient,
    "FeatureLookup": FakeFeatureLookup,
    "TrainingSet": FakeTrainingSet,
}


@pytest.mark.parametrize("qualified", sorted(fake_fe.REAL_SIGNATURES))
def test_the_fake_has_the_sdks_signatures(qualified):
    owner, method = qualified.split(".")
    assert _signature(getattr(FAKE_CLASSES[owner], method)) == fake_fe.REAL_SIGNATURES[qualified]


def test_an_sdk_call_with_a_wrong_keyword_fails_as_it_would_on_databricks(uc):
    client = uc.client()
    with pytest.raises(TypeError):
        client.get_table("dev.clv.f")  # keyword-only in the SDK
    with pytest.raises(TypeError):
        client.write_table(name="dev.clv.f", df=None, overwrite=True)
    with pytest.raises(TypeError):
        FakeFeatureLookup(table_name="dev.clv.f", lookup_key="customer_id", timestamp_key="snapshot_date")


def test_fake_create_table_rules(uc, spark):
    client = uc.client()
    schema = history(spark).schema
    with pytest.raises(ValueError, match="Timeseries column 'snapshot_date' is not in primary_keys"):
        client.create_table(
            name="dev.clv.f", primary_keys=["customer_id"], timeseries_column="snapshot_date", schema=schema
        )
    with pytest.raises(ValueError, match="Either schema or df must be provided"):
        client.create_table(name="dev.clv.f", primary_keys=["customer_id"])
    with pytest.raises(ValueError, match="only supports feature tables in Unity Catalog"):
        client.create_table(name="spark_catalog.default.f", primary_keys=["customer_id"], schema=schema)
    with pytest.raises(ValueError, match="missing column"):
        client.create_table(name="dev.clv.f", primary_keys=["customer_key"], schema=schema)
    duplicated = history(spark).unionByName(history(spark).limit(1))
    with pytest.raises(ValueError, match="Non-unique rows detected"):
        client.create_table(name="dev.clv.f", primary_keys=list(KEYS), timeseries_column="snapshot_date", df=duplicated)
    assert not uc.tables.exists(TableName.of("dev", "clv", "f"))  # the failed first write removed the table
    with pytest.raises(ValueError, match="unexpected keyword"):
        client.create_table(name="dev.clv.f", primary_keys=list(KEYS), schema=schema, mode="overwrite")


def test_fake_create_table_twice_returns_the_table_without_writing_or_checking(uc, spark):
    client = uc.client()
    client.create_table(
        name="dev.clv.f", primary_keys=list(KEYS), timestamp_keys=["snapshot_date"], df=history(spark)
    )  # the old keyword, still accepted through **kwargs
    again = client.create_table(
        name="dev.clv.f", primary_keys=["customer_id"], schema=history(spark).schema, df=history(spark).limit(1)
    )
    assert again.primary_keys == ["customer_id", "snapshot_date"] and again.timestamp_keys == ["snapshot_date"]
    assertDataFrameEqual(uc.tables.read(TableName.of("dev", "clv", "f")), history(spark))


def test_fake_write_table_only_merges(uc, spark):
    client = uc.client()
    with pytest.raises(ValueError, match="could not be found"):
        client.write_table(name="dev.clv.f", df=history(spark))
    client.create_table(name="dev.clv.f", primary_keys=list(KEYS), timeseries_column="snapshot_date", df=history(spark))
    with pytest.raises(ValueError, match="'merge' is the only supported mode"):
        client.write_table(name="dev.clv.f", df=history(spark), mode="overwrite")
    with pytest.raises(ValueError, match="must contain all specified primary key columns"):
        client.write_table(name="dev.clv.f", df=history(spark).drop("customer_id"))
    update = spark.createDataFrame([("A", D(2011, 3, 31), 30, 300.0), ("Z", D(2011, 3, 31), 1, 1.0)], FEATURE_SCHEMA)
    client.write_table(name="dev.clv.f", df=update)
    merged = history(spark).where("NOT (customer_id = 'A' AND snapshot_date = '2011-03-31')").unionByName(update)
    assertDataFrameEqual(client.read_table(name="dev.clv.f"), merged)  # an upsert: B's row survives


def test_fake_training_set_rules(uc, spark):
    client = uc.client()
    client.create_table(name="dev.clv.f", primary_keys=list(KEYS), timeseries_column="snapshot_date", df=history(spark))
    labels = spark.createDataFrame([("A", D(2011, 1, 31), 1)], LABEL_SCHEMA)

    def training_set(df, label="repurchase", **lookup_args):
        arguments = {"lookup_key": "customer_id", "timestamp_lookup_key": "snapshot_date", **lookup_args}
        return client.create_training_set(
            df=df, feature_lookups=[FakeFeatureLookup("dev.clv.f", **arguments)], label=label
        )

    with pytest.raises(ValueError, match="lookup key 'customer_id' not found in DataFrame"):
        training_set(labels.drop("customer_id"))
    with pytest.raises(ValueError, match="number of timestamp keys"):
        training_set(labels, timestamp_lookup_key=None)
    with pytest.raises(ValueError, match="has type 'date' but corresponding timestamp lookup key"):
        training_set(labels.withColumn("snapshot_date", F.col("snapshot_date").cast("timestamp")))
    with pytest.raises(ValueError, match="Label column 'churn' was not found"):
        training_set(labels, label="churn")
    with pytest.raises(ValueError, match="One of 'feature_lookups', 'feature_spec', or 'features'"):
        client.create_training_set(df=labels, label="repurchase")


def test_the_fake_catalog_keeps_feature_table_keys_not_null_and_column_types_fixed(uc, spark):
    client = uc.client()
    name = TableName.of("dev", "clv", "f")
    client.create_table(name="dev.clv.f", primary_keys=list(KEYS), timeseries_column="snapshot_date", df=history(spark))
    with pytest.raises(FakeDeltaError, match="NOT NULL constraint violated for column: customer_id"):
        uc.tables.overwrite(name, spark.createDataFrame([(None, D(2011, 1, 31), 1, 1.0)], FEATURE_SCHEMA))
    with pytest.raises(FakeDeltaError, match="NOT NULL constraint violated for column: snapshot_date"):
        uc.tables.overwrite(name, history(spark).drop("snapshot_date"))
    with pytest.raises(FakeDeltaError, match="Failed to merge fields 'purchase_count'"):
        uc.tables.overwrite(name, history(spark).withColumn("purchase_count", F.col("purchase_count").cast("string")))
    assertDataFrameEqual(uc.tables.read(name), history(spark))


# --- choosing the world ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ("local", "local"),
        ("dev", "databricks"),
        ("staging", "databricks"),
        ("prod", "databricks"),
        ("test", "databricks"),
    ],
)
def test_every_env_names_its_feature_store(env, kind):
    classes = {
        "local": "mlops.feature_store.LocalFeatureStore",
        "databricks": "mlops.feature_store.DatabricksFeatureStore.in_unity_catalog",
    }
    assert compose_config([f"env={env}"]).env.feature_store._target_ == classes[kind]


def test_make_feature_store_follows_the_env(spark, tmp_path):
    local = compose_config([f"env.storage_root={tmp_path}"]).env
    tables = DeltaPathTableStore(spark, tmp_path)
    assert isinstance(make_feature_store(local, spark, tables), LocalFeatureStore)
    dev = compose_config(["env=dev"]).env
    store = make_feature_store(dev, spark, tables)
    assert isinstance(store, DatabricksFeatureStore) and isinstance(store.tables, UnityCatalogFeatureTables)
    assert store._client is None  # built on first use, not here


def test_an_unknown_feature_store_fails_at_composition_naming_the_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as caught:
        compose_config(["env=dev", "env/feature_store=feast"])
    assert "feast" in str(caught.value) and "databricks" in str(caught.value) and "local" in str(caught.value)


def test_databricks_feature_tables_need_catalog_tables(spark, tmp_path):
    env = compose_config(["env=dev", "env/tables=delta_path"]).env
    with pytest.raises(ConfigError, match="the env's tables are DeltaPathTableStore"):
        make_feature_store(env, spark, DeltaPathTableStore(spark, tmp_path))


def test_the_run_context_has_the_envs_feature_store_and_write_all_loads_feature_tables(ctx, spark):
    assert isinstance(ctx.feature_store, LocalFeatureStore)
    spec = FeatureTableSpec.from_key_columns(ctx.table_name("features"), KEYS)
    features = history(spark).withColumn("days_since_last_purchase", F.lit(3))
    with pytest.raises(ConfigError, match="loaded whole"):
        ctx.write_all(
            {"features": features}, replace_dates=("snapshot_date", [D(2011, 1, 31)]), feature_tables={"features": spec}
        )
    assert ctx.feature_store.table_spec(spec.name) is None  # refused before anything was written
    written = ctx.write_all({"features": features}, feature_tables={"features": spec})
    assert written["features"] == (0, 4)  # the first load is the table's version 0
    assert ctx.feature_store.table_spec(spec.name).same_keys(spec)
