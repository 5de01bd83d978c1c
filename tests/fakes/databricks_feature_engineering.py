"""A stand-in for `databricks.feature_engineering` (databricks-feature-engineering 0.18.2) at the SDK boundary.

The real client needs a Databricks workspace (Unity Catalog, a Spark driver on a cluster), so the
adapter in mlops.feature_store is tested against this. Three parts:

- `FakeFeatureEngineeringClient`, `FakeFeatureLookup`, `FakeTrainingSet`: the public methods the
  adapter uses, with the SDK's exact signatures (`REAL_SIGNATURES`, copied by hand from the 0.18.2
  wheel's source and checked by tests/test_feature_store.py), so a call the SDK would reject (a
  wrong or missing keyword, a positional argument to a keyword-only method) fails here too. Every
  call is recorded in `FakeUnityCatalog.calls`.
- `FakeUnityCatalog`: the workspace behind the client. Tables are real Delta tables (deltalake under
  a local root) read by the test's real Spark session, so training sets are real results.
- `FakeUnityCatalogTables`: the `TableStore` the adapter gets in this world. It writes the way
  `UnityCatalogFeatureTables` does on Databricks (a Delta overwrite of the existing table with
  mergeSchema, no overwriteSchema) and enforces what Delta and Unity Catalog enforce on it: the
  NOT NULL primary-key columns of a feature table, and no change of an existing column's type.

The SDK rules enforced, with the SDK's wording where it has one (file names are in the 0.18.2 wheel):
1. Feature tables are Unity Catalog names `catalog.schema.table`, never hive_metastore / spark_catalog
   (client.py `_validate_is_uc_table_name`). Stricter than the SDK: a 1- or 2-part name, which the SDK
   completes with the current catalog and schema, is refused, since the adapter always passes 3 parts.
2. create_table: `timeseries_column` must be one of `primary_keys`; `timestamp_keys` /
   `timeseries_columns` are still accepted through **kwargs and mapped onto it, one key at most;
   no duplicate keys; `schema` or `df` required (and equal if both); keys must be columns; a `df`
   must be unique on the keys (client.py `create_table`, _compute_client.py `_create_table`).
   An existing feature table is returned as it is: its keys are NOT compared and `df` is NOT
   written (the UC path of `_create_table`). An existing table without a primary key constraint
   raises the SDK's "Table can't be used as a feature table ..." (feature_table.py
   `from_uc_get_table_response`). Unknown **kwargs are refused (`check_kwargs_empty`).
3. write_table: only mode="merge" (client.py `write_table`); the table must exist and be a feature
   table; `df` must have the primary and timestamp keys with the table's types; with a timestamp
   key every feature column too; rows unique on the keys; then an upsert on the keys
   (_compute_client.py `write_table`, _spark_client.py `write_table` / `_generate_merge_operation`).
4. create_training_set: exactly one of feature_lookups / feature_spec / features (only
   feature_lookups is emulated); label columns must be in `df` and not excluded; per lookup, the
   lookup keys (and timestamp lookup key) must be in `df`, as many as the table's keys, with the
   same types (feature_lookup_utils.py `_validate_join_keys`). The join is the SDK's native as-of
   join (feature_lookup_utils.py `_spark_asof_join_features_native`): for each row, the newest
   feature row of the same key at or before the row's time, left-joined, so a key without one gets
   nulls. Output columns: the df's non-label columns, the features (in feature_names order, or for
   "all features" the non-key columns alphabetically: training_scoring_utils.py
   `explode_feature_lookups`), then the labels; exclude_columns dropped. The table data is pinned
   when the training set is created.
"""

from __future__ import annotations

import copy
import datetime
import functools
import operator
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.tables import DeltaPathTableStore, TableName

# (callable, parameters as `inspect.signature` prints them, minus `self` and annotations)
REAL_SIGNATURES: dict[str, str] = {
    "FeatureEngineeringClient.__init__": "(*, model_registry_uri=None)",
    "FeatureEngineeringClient.create_table": "(*, name, primary_keys, df=None, timeseries_column=None, partition_columns=None, schema=None, "
    "description=None, tags=None, **kwargs)",
    "FeatureEngineeringClient.get_table": "(*, name)",
    "FeatureEngineeringClient.read_table": "(*, name, **kwargs)",
    "FeatureEngineeringClient.drop_table": "(*, name)",
    "FeatureEngineeringClient.write_table": "(*, name, df, mode='merge', checkpoint_location=None, trigger={'processingTime': '5 seconds'})",
    "FeatureEngineeringClient.create_training_set": "(*, df, feature_lookups=None, feature_spec=None, features=None, label, exclude_columns=None, "
    "use_spark_native_join=False, use_timeseries_filtering=False, **kwargs)",
    "FeatureLookup.__init__": "(table_name, lookup_key, *, feature_names=None, rename_outputs=None, timestamp_lookup_key=None, "
    "lookback_window=None, default_values=None, **kwargs)",
    "TrainingSet.load_df": "()",
}

MERGE = "merge"
_DEFAULT_WRITE_STREAM_TRIGGER = {"processingTime": "5 seconds"}
LOCAL_METASTORE_NAMES = ("hive_metastore", "spark_catalog")
# create_training_set kwargs the SDK knows (client.py _HINT_LOW_CARDINALITY_COLUMNS, _USE_SCALABLE_NATIVE_JOIN)
_KNOWN_TRAINING_SET_KWARGS = ("hint_low_cardinality_columns", "use_scalable_native_join")


class FakeDeltaError(Exception):
    """What Delta / Unity Catalog raise when a write would break a table's schema or constraints."""


@dataclass
class _FeatureTableMeta:
    primary_keys: list[str]  # without the timestamp key, as Unity Catalog's constraint lists them
    timestamp_keys: list[str]
    description: str | None
    tags: dict[str, str]
    table_id: str

    @property
    def all_keys(self) -> list[str]:
        return self.primary_keys + self.timestamp_keys


class FakeFeatureTable:
    """`databricks.ml_features.entities.feature_table.FeatureTable` as get_table returns it (TK part of PK)."""

    def __init__(self, name: str, meta: _FeatureTableMeta, columns: list[str]) -> None:
        self.name = name
        self.table_id = meta.table_id
        self.description = meta.description or ""
        self.primary_keys = list(meta.all_keys)
        self.timestamp_keys = list(meta.timestamp_keys)
        self.partition_columns: list[str] = []
        self.features = list(columns)
        self.tags = dict(meta.tags)


class FakeUnityCatalog:
    """The workspace: Delta tables under `root`, which of them are feature tables, and every client call."""

    def __init__(self, spark: Any, root: str | Path) -> None:
        self.spark = spark
        self.delta = DeltaPathTableStore(spark, root)
        self.feature_tables: dict[str, _FeatureTableMeta] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.tables = FakeUnityCatalogTables(self)

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == method]

    def client(self) -> FakeFeatureEngineeringClient:
        return FakeFeatureEngineeringClient.on(self)

    def create_plain_table(self, name: TableName, df: Any) -> None:
        """A Delta table without a primary key constraint (e.g. written before it became a feature table)."""
        self.delta.overwrite(name, df)


class FakeUnityCatalogTables:
    """`UnityCatalogFeatureTables` on the fake workspace: the TableStore the adapter writes through."""

    def __init__(self, catalog: FakeUnityCatalog) -> None:
        self._catalog = catalog
        self._delta = catalog.delta

    def exists(self, name: TableName) -> bool:
        return self._delta.exists(name)

    def read(self, name: TableName) -> Any:
        return self._delta.read(name)

    def version(self, name: TableName) -> int | None:
        return self._delta.version(name)

    def history(self, name: TableName) -> list[dict[str, Any]]:
        return self._delta.history(name)

    def restore(self, name: TableName, version: int | None) -> None:
        # RESTORE TABLE brings back data and schema; the constraint is Unity Catalog's, so it stays
        self._delta.restore(name, version)
        if version is None:
            self._catalog.feature_tables.pop(str(name), None)

    def replace_dates(self, name: TableName, df: Any, column: str, dates: Any) -> int | None:
        return self._delta.replace_dates(name, df, column, dates)

    def overwrite(self, name: TableName, df: Any) -> int | None:
        """A Delta overwrite with mergeSchema: existing columns keep their type, new ones are added,
        missing ones become null, and a feature table's key columns stay NOT NULL."""
        from pyspark.sql import functions as F

        if not self._delta.exists(name):
            return self._delta.overwrite(name, df)
        existing = {field.name: field.dataType for field in self._delta.read(name).schema.fields}
        incoming = {field.name: field.dataType for field in df.schema.fields}
        for column, kind in incoming.items():
            if column in existing and existing[column] != kind:
                raise FakeDeltaError(
                    f"[DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields '{column}' and "
                    f"'{column}' ({existing[column].simpleString()} vs {kind.simpleString()})"
                )
        meta = self._catalog.feature_tables.get(str(name))
        for key in meta.all_keys if meta else []:
            if key not in incoming:
                raise FakeDeltaError(
                    f"[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for column: {key}."
                )
        conformed = df.select(
            *[
                F.col(column) if column in incoming else F.lit(None).cast(kind).alias(column)
                for column, kind in existing.items()
            ],
            *[F.col(column) for column in incoming if column not in existing],
        )
        data = conformed.toArrow()  # the whole result first: a failing query writes nothing
        for key in meta.all_keys if meta else []:
            if data.column(key).null_count:
                raise FakeDeltaError(
                    f"[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for column: {key}."
                )
        return self._delta.overwrite_arrow(name, data)


def _as_list(value: Any, default: list | None = None) -> list:
    if value is None:
        return list(default or [])
    return [value] if isinstance(value, str) else list(value)


class FakeFeatureLookup:
    """`FeatureLookup`: the same constructor and the same refusals."""

    def __init__(
        self,
        table_name: str,
        lookup_key: str | list[str],
        *,
        feature_names: str | list[str] | None = None,
        rename_outputs: dict[str, str] | None = None,
        timestamp_lookup_key: str | None = None,
        lookback_window: datetime.timedelta | None = None,
        default_values: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        feature_name = kwargs.pop("feature_name", None)
        kwargs.pop("output_name", None)
        if kwargs:
            raise TypeError(f"FeatureLookup got unexpected keyword argument(s): {list(kwargs.keys())}")
        if type(timestamp_lookup_key) is list:
            if len(timestamp_lookup_key) == 0:
                timestamp_lookup_key = None
            elif len(timestamp_lookup_key) == 1:
                timestamp_lookup_key = timestamp_lookup_key[0]
            else:
                raise ValueError("Setting multiple timestamp lookup keys is not supported.")
        if lookback_window is not None and not timestamp_lookup_key:
            raise ValueError(
                f"Unexpected lookback_window value: {lookback_window}, lookback windows can only be "
                "applied on time series feature tables."
            )
        self.table_name = table_name
        self.lookup_key = copy.copy(lookup_key)
        self.feature_names = _as_list(feature_names) or ([feature_name] if feature_name else [])
        self.rename_outputs = dict(rename_outputs or {})
        self.timestamp_lookup_key = timestamp_lookup_key
        self.lookback_window = lookback_window
        self.default_values = dict(default_values or {})


@dataclass
class _Lookup:
    """A FeatureLookup checked against its table (the SDK's FeatureColumnInfos for one lookup)."""

    table_name: str
    lookup_key: list[str]
    timestamp_lookup_key: str | None
    table_keys: list[str]
    table_timestamp_key: str | None
    features: list[str]  # joined from the table (features already in df are not)
    data: Any = field(repr=False)


def _native_as_of_join(df: Any, lookup: _Lookup) -> Any:
    """The SDK's native as-of join: newest feature time per (key, time), that row's features, left join."""
    from pyspark.sql import functions as F

    keys, ts = lookup.lookup_key, lookup.timestamp_lookup_key
    if not lookup.features:
        return df
    if ts is None or lookup.table_timestamp_key is None:
        rows = lookup.data.select(*[F.col(t).alias(k) for t, k in zip(lookup.table_keys, keys)], *lookup.features)
        return df.join(rows, keys, "left")
    label_keys = df.select(*[F.col(k).alias(f"__l{i}") for i, k in enumerate(keys)], F.col(ts).alias("__lts"))
    feature_keys = lookup.data.select(
        *[F.col(t).alias(f"__f{i}") for i, t in enumerate(lookup.table_keys)],
        F.col(lookup.table_timestamp_key).alias("__fts"),
    )
    same_key = functools.reduce(operator.and_, [F.col(f"__l{i}") == F.col(f"__f{i}") for i in range(len(keys))])
    newest = (
        label_keys.join(feature_keys, same_key & (F.col("__lts") >= F.col("__fts")), "left")
        .groupBy(*[f"__l{i}" for i in range(len(keys))], "__lts")
        .agg(F.max("__fts").alias("__max_ts"))
    )
    rows = lookup.data.select(
        *[F.col(t).alias(f"__f{i}") for i, t in enumerate(lookup.table_keys)],
        F.col(lookup.table_timestamp_key).alias("__fts"),
        *lookup.features,
    )
    picked = (
        rows.join(newest, same_key & (F.col("__fts") == F.col("__max_ts")), "inner")
        .select(*[F.col(f"__l{i}").alias(k) for i, k in enumerate(keys)], F.col("__lts").alias(ts), *lookup.features)
        .dropDuplicates([*keys, ts])
    )
    return df.join(picked, [*keys, ts], "left")


class FakeTrainingSet:
    """`TrainingSet`: load_df joins the lookups into the df and selects the SDK's output columns."""

    def __init__(self, *, df: Any, lookups: list[_Lookup], labels: list[str], exclude_columns: list[str]) -> None:
        self._df, self._lookups, self._labels, self._exclude = df, lookups, labels, exclude_columns

    def _output_columns(self) -> list[str]:
        source = [column for column in self._df.columns if column not in self._labels]
        features = [feature for lookup in self._lookups for feature in lookup.features]
        return [column for column in source + features if column not in self._exclude] + self._labels

    def load_df(self) -> Any:
        joined = self._df
        for lookup in self._lookups:
            joined = _native_as_of_join(joined, lookup)
        return joined.select(*self._output_columns())


class FakeFeatureEngineeringClient:
    """`FeatureEngineeringClient` on a FakeUnityCatalog."""

    # what a client constructed the SDK's way (no arguments, e.g. by the adapter) talks to; set by install()
    default_catalog: FakeUnityCatalog | None = None

    def __init__(self, *, model_registry_uri: str | None = None) -> None:
        if FakeFeatureEngineeringClient.default_catalog is None:
            raise RuntimeError("no FakeUnityCatalog installed: use install(monkeypatch, catalog)")
        self._uc = FakeFeatureEngineeringClient.default_catalog
        self._uc.calls.append(("__init__", {"model_registry_uri": model_registry_uri}))

    @classmethod
    def on(cls, catalog: FakeUnityCatalog) -> FakeFeatureEngineeringClient:
        client = cls.__new__(cls)
        client._uc = catalog
        return client

    # --- helpers (not SDK API) ---

    def _record(self, method: str, **arguments: Any) -> None:
        self._uc.calls.append((method, arguments))

    def _uc_name(self, name: str) -> TableName:
        parts = name.split(".") if isinstance(name, str) else []
        if len(parts) != 3 or parts[0].lower() in LOCAL_METASTORE_NAMES:
            raise ValueError(
                "FeatureEngineeringClient only supports feature tables in Unity Catalog. "
                "For feature tables in hive metastore, use databricks.feature_store.FeatureStoreClient."
            )
        return TableName.of(*parts)

    def _meta(self, name: str) -> _FeatureTableMeta:
        table = self._uc_name(name)
        if not self._uc.delta.exists(table):
            raise ValueError(f"The feature data table for '{name}' could not be found.")
        meta = self._uc.feature_tables.get(str(table))
        if meta is None:
            raise ValueError(
                "Table can't be used as a feature table because it has no primary key constraint defined."
                " Use 'ALTER TABLE table_name ADD CONSTRAINT table_name_pk PRIMARY KEY( key_column [,...] )'"
                " to add a primary key constraint on the table."
            )
        return meta

    @staticmethod
    def _non_unique(df: Any, keys: list[str]) -> bool:
        from pyspark.sql import functions as F

        counts = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("databricks__internal__row_counter"))
        return counts.where(F.col("databricks__internal__row_counter") > 1).limit(1).count() > 0

    # --- the SDK's public methods ---

    def create_table(
        self,
        *,
        name: str,
        primary_keys: str | list[str],
        df: Any | None = None,
        timeseries_column: str | None = None,
        partition_columns: str | list[str] | None = None,
        schema: Any | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> FakeFeatureTable:
        self._record(
            "create_table",
            name=name,
            primary_keys=primary_keys,
            df=df,
            timeseries_column=timeseries_column,
            partition_columns=partition_columns,
            schema=schema,
            description=description,
            tags=tags,
            **kwargs,
        )
        table = self._uc_name(name)
        if timeseries_column is None:
            if "timestamp_keys" in kwargs:
                timeseries_column = kwargs.pop("timestamp_keys")
            if "timeseries_columns" in kwargs:
                timeseries_column = kwargs.pop("timeseries_columns")
            if type(timeseries_column) is list:
                if len(timeseries_column) == 1:
                    timeseries_column = timeseries_column[0]
                elif len(timeseries_column) == 0:
                    timeseries_column = None
                else:
                    raise ValueError("Setting multiple timeseries keys is not supported.")
        keys = _as_list(primary_keys)
        if timeseries_column is not None and timeseries_column not in keys:
            raise ValueError(
                f"Timeseries column '{timeseries_column}' is not in primary_keys. "
                "Timeseries columns must be primary keys."
            )
        if kwargs:
            raise ValueError(f"create_table got unexpected keyword arguments {sorted(kwargs)}")
        if len(set(keys)) != len(keys):
            raise ValueError(f"Found duplicated keys in primary_keys: {keys}")
        if schema is None and df is None:
            raise ValueError("Either schema or df must be provided")
        if schema is not None and df is not None and schema != df.schema:
            raise ValueError(
                "Provide either 'schema' or 'df' arguments. If both arguments are provided, their schemas must match."
            )
        table_schema = schema if schema is not None else df.schema
        for kind, columns in (("primary keys", keys), ("partition columns", _as_list(partition_columns))):
            missing = [column for column in columns if column not in table_schema.names]
            if missing:
                raise ValueError(
                    f"The provided DataFrame or schema must contain all specified {kind}. "
                    f"Schema {table_schema} is missing column(s) {missing}"
                )
        if self._uc.delta.exists(table):
            # Unity Catalog: an existing table is returned as it is (keys not compared, df not written)
            return self.get_table(name=name)
        timestamp_keys = _as_list(timeseries_column)
        entity_keys = [key for key in keys if key not in timestamp_keys]
        self._uc.delta.overwrite(table, self._uc.spark.createDataFrame([], table_schema))
        self._uc.feature_tables[str(table)] = _FeatureTableMeta(
            entity_keys, timestamp_keys, description, dict(tags or {}), f"fake-{len(self._uc.feature_tables)}"
        )
        if df is not None:
            try:
                if self._non_unique(df, entity_keys + timestamp_keys):
                    raise ValueError(
                        "Non-unique rows detected in input dataframe for key combination "
                        f"{entity_keys + timestamp_keys}."
                    )
                self._uc.tables.overwrite(table, df)
            except Exception:
                # the SDK deletes the table it just created when the first write fails
                self._uc.feature_tables.pop(str(table), None)
                self._uc.delta.restore(table, None)
                raise
        return self.get_table(name=name)

    def get_table(self, *, name: str) -> FakeFeatureTable:
        self._record("get_table", name=name)
        meta = self._meta(name)
        return FakeFeatureTable(name, meta, self._uc.delta.read(self._uc_name(name)).columns)

    def read_table(self, *, name: str, **kwargs: Any) -> Any:
        self._record("read_table", name=name, **kwargs)
        self._meta(name)
        return self._uc.delta.read(self._uc_name(name))

    def drop_table(self, *, name: str) -> None:
        self._record("drop_table", name=name)
        table = self._uc_name(name)
        if str(table) not in self._uc.feature_tables:
            raise ValueError(f"Feature table '{name}' does not exist.")
        self._uc.feature_tables.pop(str(table))
        self._uc.delta.restore(table, None)

    def write_table(
        self,
        *,
        name: str,
        df: Any,
        mode: str = MERGE,
        checkpoint_location: str | None = None,
        trigger: dict[str, Any] = _DEFAULT_WRITE_STREAM_TRIGGER,
    ) -> Any:
        self._record(
            "write_table", name=name, df=df, mode=mode, checkpoint_location=checkpoint_location, trigger=trigger
        )
        self._uc_name(name)
        if mode != MERGE:
            raise ValueError(
                f"Unsupported mode '{mode}'. '{MERGE}' is the only supported mode. If you want to "
                "overwrite a table, run SQL 'DELETE FROM <table name>;' to delete all rows, or drop "
                "and recreate the table before calling this method."
            )
        meta = self._meta(name)
        table = self._uc_name(name)
        existing = self._uc.delta.read(table)
        table_types = {f.name: f.dataType for f in existing.schema.fields}
        df_types = {f.name: f.dataType for f in df.schema.fields}
        for kind, keys in (("primary key columns", meta.primary_keys), ("timestamp key column", meta.timestamp_keys)):
            if any(df_types.get(key) != table_types[key] for key in keys):
                raise ValueError(
                    f"The provided DataFrame must contain all specified {kind} and have the same type. "
                    f"Could not find key(s) '{keys}' with correct types in schema {df.schema}."
                )
        if meta.timestamp_keys:
            missing = sorted(set(table_types) - set(df_types))
            if missing:
                raise ValueError(
                    "Feature table has a timestamp column. When calling write_table the provided "
                    f"DataFrame must contain all the feature columns. Could not find column(s) '{missing}'."
                )
        keys = meta.all_keys
        if self._non_unique(df, keys):
            raise ValueError(f"Non-unique rows detected in input dataframe for key combination {keys}.")
        kept = existing.join(df.select(*keys), keys, "left_anti")
        self._uc.tables.overwrite(table, kept.unionByName(df, allowMissingColumns=True))
        return None

    def create_training_set(
        self,
        *,
        df: Any,
        feature_lookups: list[Any] | None = None,
        feature_spec: str | None = None,
        features: list[Any] | None = None,
        label: str | list[str] | None,
        exclude_columns: list[str] | None = None,
        use_spark_native_join: bool = False,
        use_timeseries_filtering: bool = False,
        **kwargs: Any,
    ) -> FakeTrainingSet:
        self._record(
            "create_training_set",
            df=df,
            feature_lookups=feature_lookups,
            feature_spec=feature_spec,
            features=features,
            label=label,
            exclude_columns=exclude_columns,
            use_spark_native_join=use_spark_native_join,
            use_timeseries_filtering=use_timeseries_filtering,
            **kwargs,
        )
        unknown = sorted(set(kwargs) - set(_KNOWN_TRAINING_SET_KWARGS))
        if unknown:
            raise TypeError(f"create_training_set got unexpected keyword arguments {unknown}")
        provided = sum(option is not None for option in (feature_lookups, feature_spec, features))
        if provided == 0:
            raise ValueError("One of 'feature_lookups', 'feature_spec', or 'features' must be provided.")
        if provided > 1:
            raise ValueError("Only one of 'feature_lookups', 'feature_spec', or 'features' can be provided.")
        if feature_lookups is None:
            raise NotImplementedError("the fake emulates feature_lookups only")
        if not isinstance(feature_lookups, list):
            raise TypeError("'feature_lookups' must be a list.")
        for i, item in enumerate(feature_lookups):
            if not isinstance(item, FakeFeatureLookup):
                raise TypeError(f"'feature_lookups[{i}]' must be a FeatureLookup or FeatureFunction.")
        exclude = list(exclude_columns or [])
        labels = _as_list(label)
        if len(set(df.columns)) != len(df.columns):
            raise ValueError(f"Found duplicate DataFrame column names {df.columns}.")
        if len(set(labels)) != len(labels):
            raise ValueError(f"Found duplicate label names {labels}.")
        for name in labels:
            if name not in df.columns:
                raise ValueError(f"Label column '{name}' was not found in DataFrame")
            if name in exclude:
                raise ValueError(f"Label column '{name}' cannot be excluded")
        return FakeTrainingSet(
            df=df, lookups=self._resolve(df, feature_lookups), labels=labels, exclude_columns=exclude
        )

    def _resolve(self, df: Any, feature_lookups: list[FakeFeatureLookup]) -> list[_Lookup]:
        resolved = []
        taken = set(df.columns)
        for lookup in feature_lookups:
            meta = self._meta(lookup.table_name)
            data = self._uc.delta.read(self._uc_name(lookup.table_name))
            error = f"Unable to join feature table '{lookup.table_name}'"
            checks = [
                (_as_list(lookup.lookup_key), meta.primary_keys, "lookup key", "primary key"),
                (_as_list(lookup.timestamp_lookup_key), meta.timestamp_keys, "timestamp lookup key", "timestamp key"),
            ]
            for df_keys, table_keys, df_kind, table_kind in checks:
                missing = [key for key in df_keys if key not in df.columns]
                if missing:
                    raise ValueError(
                        f"{error} because {df_kind} {', '.join(repr(k) for k in missing)} not found in DataFrame."
                    )
                if len(df_keys) != len(table_keys):
                    raise ValueError(
                        f"{error} because number of {table_kind}s ({table_keys}) does not match "
                        f"number of {df_kind}s ({df_keys})."
                    )
                for df_key, table_key in zip(df_keys, table_keys):
                    if df.schema[df_key].dataType != data.schema[table_key].dataType:
                        raise ValueError(
                            f"{error} because {table_kind} '{table_key}' has type "
                            f"'{data.schema[table_key].dataType.simpleString()}' but corresponding "
                            f"{df_kind} '{df_key}' has type "
                            f"'{df.schema[df_key].dataType.simpleString()}' in DataFrame."
                        )
            non_keys = [column for column in data.columns if column not in meta.all_keys]
            names = list(lookup.feature_names) or sorted(non_keys)
            unknown = [name for name in names if name not in non_keys]
            if unknown:
                raise ValueError(f"Features {unknown} do not exist in feature table '{lookup.table_name}'.")
            features = [name for name in names if name not in taken]  # a feature already in df is not looked up
            taken.update(features)
            resolved.append(
                _Lookup(
                    lookup.table_name,
                    _as_list(lookup.lookup_key),
                    lookup.timestamp_lookup_key,
                    meta.primary_keys,
                    (meta.timestamp_keys or [None])[0],
                    features,
                    data,
                )
            )
        return resolved


def install(monkeypatch: Any, catalog: FakeUnityCatalog) -> types.ModuleType:
    """Make `import databricks.feature_engineering` give the fake (clients built there use `catalog`)."""
    module = types.ModuleType("databricks.feature_engineering")
    module.FeatureEngineeringClient = FakeFeatureEngineeringClient  # type: ignore[attr-defined]
    module.FeatureLookup = FakeFeatureLookup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "databricks.feature_engineering", module)
    monkeypatch.setattr(FakeFeatureEngineeringClient, "default_catalog", catalog)
    return module


def uninstall(monkeypatch: Any) -> None:
    """Make the import fail as it does where databricks-feature-engineering is not installed."""
    monkeypatch.setitem(sys.modules, "databricks.feature_engineering", None)
