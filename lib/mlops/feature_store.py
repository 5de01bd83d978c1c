"""Feature tables with primary and timestamp keys, and point-in-time training sets.

One interface, two worlds (DESIGN rule 4):

- `LocalFeatureStore` keeps feature tables in any `TableStore` (local Delta or a Spark catalog) and
  does the point-in-time join itself, with the DataFrame API only (rule 5: Spark Connect).
- `DatabricksFeatureStore` turns the same calls into Databricks Feature Engineering in Unity Catalog
  (`databricks-feature-engineering`, `FeatureEngineeringClient` / `FeatureLookup`), imported lazily
  so that nothing here needs the package until a Databricks env actually uses a feature table.

Both follow the SDK's semantics where they are visible to a caller, so a stage cannot tell the
worlds apart: a training set keeps every row of the labels DataFrame (left join; a lookup that finds
nothing gives nulls), takes for each row the latest feature row at or before the row's timestamp,
and returns the labels' own columns, then the looked-up features, then the label columns.
Looked-up features come in `feature_names` order, or, when no names are given, in alphabetical
order (the SDK's order for "all features"): pass names to get a fixed column order.

Models are neither logged nor scored through a feature store: batch scoring computes the features
at the scoring date for every customer and scores them with the registered skops model by alias,
whereas the Feature Engineering client's log_model / score_batch would need those scoring features
written as a feature table first and would replace our probability outputs and target decoding with
the flavor's plain `prediction` column.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from omegaconf import DictConfig

from mlops.errors import ConfigError, DataQualityError
from mlops.tables import CatalogTableStore, TableName, TableStore, VersionedCatalogTableStore

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

_FEATURE_TS = "__feature_ts"
_RANK = "__rank"


@dataclass(frozen=True)
class FeatureTableSpec:
    """What makes a table a feature table: primary keys that identify a row, one of them the timestamp key.

    As in Unity Catalog, the timestamp key is one of the primary keys: (entity, snapshot date)
    identifies a row, and the snapshot date is the time a point-in-time lookup compares with.
    """

    name: TableName
    primary_keys: tuple[str, ...]
    timestamp_key: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        where = f"feature table {self.name}"
        if not self.primary_keys:
            raise ConfigError(
                "a feature table needs at least one primary key",
                where=where,
                fix="list the entity keys and the timestamp key, e.g. use_case.key_columns",
            )
        if len(set(self.primary_keys)) != len(self.primary_keys):
            raise ConfigError(
                f"duplicate primary keys {list(self.primary_keys)}", where=where, fix="name each key column once"
            )
        if self.timestamp_key is not None and self.timestamp_key not in self.primary_keys:
            raise ConfigError(
                f"timestamp key {self.timestamp_key!r} is not one of the primary keys {list(self.primary_keys)}",
                where=where,
                fix="the timestamp key must be a primary key (Unity Catalog's rule)",
            )

    @classmethod
    def from_key_columns(cls, name: TableName, key_columns: Sequence[str], description: str = "") -> FeatureTableSpec:
        """`use_case.key_columns` lists the entity keys and, last, the snapshot date: the timestamp key."""
        keys = tuple(str(column) for column in key_columns)
        return cls(name, keys, keys[-1] if len(keys) > 1 else None, description)

    @property
    def entity_keys(self) -> tuple[str, ...]:
        """The primary keys without the timestamp key: what a FeatureLookup's lookup_key matches."""
        return tuple(key for key in self.primary_keys if key != self.timestamp_key)

    def same_keys(self, other: FeatureTableSpec) -> bool:
        return set(self.primary_keys) == set(other.primary_keys) and self.timestamp_key == other.timestamp_key


@dataclass(frozen=True)
class FeatureLookupSpec:
    """Which features to join from a feature table, on which columns of the labels DataFrame.

    `lookup_key` matches the table's entity keys in order; `timestamp_lookup_key`, when given, makes
    the lookup point-in-time. `feature_names=None` means every non-key column, alphabetically.
    """

    table: TableName
    lookup_key: tuple[str, ...]
    timestamp_lookup_key: str | None = None
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # accept lists from callers; store tuples so a spec is hashable and cannot change
        object.__setattr__(self, "lookup_key", tuple(self.lookup_key))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(self.feature_names))


class TrainingSet(Protocol):
    """A labels DataFrame joined with its feature lookups, lazy until load_df."""

    def load_df(self) -> DataFrame: ...


class FeatureStore(Protocol):
    """What the pipeline does with feature tables, in either world."""

    def ensure_table(self, spec: FeatureTableSpec, schema: StructType) -> FeatureTableSpec:
        """Make `spec.name` a feature table with these keys, or check that it already is one (idempotent)."""
        ...

    def table_spec(self, name: TableName) -> FeatureTableSpec | None:
        """The table's keys, or None when it is not a feature table."""
        ...

    def truncate_and_load(self, name: TableName, df: DataFrame) -> int | None:
        """Replace every row of the feature table with `df` in one atomic commit; returns the new version.

        The keys are checked first (present, non-null, unique); a failing load leaves the previous
        contents, and the previous version stays restorable through the TableStore.
        """
        ...

    def create_training_set(
        self,
        labels: DataFrame,
        lookups: Sequence[FeatureLookupSpec],
        *,
        label: str | Sequence[str] | None,
        exclude_columns: Sequence[str] = (),
    ) -> TrainingSet: ...


# --- checks shared by both worlds ------------------------------------------------------------


def _check_key_columns(spec: FeatureTableSpec, schema: StructType) -> None:
    """Keys must be columns, and the timestamp key a date or timestamp (the SDK's rule for time series tables)."""
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    fields = {field.name: field for field in schema.fields}
    missing = [key for key in spec.primary_keys if key not in fields]
    if missing:
        raise ConfigError(
            f"key columns {missing} are not in the data for {spec.name}",
            where=f"feature table {spec.name}",
            fix=f"the feature function must return the keys {list(spec.primary_keys)}",
        )
    if spec.timestamp_key is not None:
        kind = fields[spec.timestamp_key].dataType
        if not isinstance(kind, (DateType, TimestampType, TimestampNTZType)):
            raise ConfigError(
                f"timestamp key {spec.timestamp_key!r} is {kind.simpleString()}, not a date or timestamp",
                where=f"feature table {spec.name}",
                fix="cast the snapshot column to date (or timestamp) in the feature function",
            )


def _check_key_values(spec: FeatureTableSpec, df: DataFrame) -> None:
    """Primary keys non-null and unique: what Unity Catalog's NOT NULL and the SDK's uniqueness
    check demand. One query finds both: keys grouped, the groups with a null or more than one row,
    those with a null first."""
    from pyspark.sql import functions as F

    keys = list(spec.primary_keys)
    any_null = functools.reduce(operator.or_, [F.col(key).isNull() for key in keys])
    offending = (
        df.groupBy(*keys)
        .agg(F.count(F.lit(1)).alias("count"))
        .where(any_null | (F.col("count") > 1))
        .orderBy(any_null.desc())
        .limit(5)
        .collect()
    )
    nulls = [row for row in offending if any(row[key] is None for key in keys)]
    if nulls:
        raise DataQualityError(
            f"rows with a null primary key {keys}",
            where=f"feature table {spec.name}",
            fix="every feature row needs all its keys; drop or repair those rows upstream",
            failures=[{key: row[key] for key in keys} for row in nulls],
        )
    if offending:
        raise DataQualityError(
            f"primary key {keys} is not unique",
            where=f"feature table {spec.name}",
            fix="the feature function must return one row per key",
            failures=[row.asDict() for row in offending],
        )


def _check_labels(df: DataFrame, labels: list[str], exclude_columns: Sequence[str]) -> None:
    where = "create_training_set"
    if len(set(df.columns)) != len(df.columns):
        raise ConfigError(
            f"the labels DataFrame has duplicate columns {df.columns}", where=where, fix="select each column once"
        )
    for name in labels:
        if name not in df.columns:
            raise ConfigError(
                f"label column {name!r} is not in the labels DataFrame", where=where, fix=f"one of {df.columns}"
            )
        if name in exclude_columns:
            raise ConfigError(
                f"label column {name!r} cannot be excluded", where=where, fix="drop it from exclude_columns"
            )


def _check_lookup_columns(df: DataFrame, lookup: FeatureLookupSpec) -> None:
    wanted = [*lookup.lookup_key, *([lookup.timestamp_lookup_key] if lookup.timestamp_lookup_key else [])]
    missing = [column for column in wanted if column not in df.columns]
    if missing:
        raise ConfigError(
            f"lookup columns {missing} for {lookup.table} are not in the DataFrame",
            where="create_training_set",
            fix=f"the DataFrame has {df.columns}",
        )


def _as_list(label: str | Sequence[str] | None) -> list[str]:
    if label is None:
        return []
    return [label] if isinstance(label, str) else list(label)


# --- the local world -------------------------------------------------------------------------


@dataclass(frozen=True)
class _ResolvedLookup:
    """A lookup checked against its table: which table keys it matches and which columns it adds."""

    spec: FeatureLookupSpec
    table: FeatureTableSpec
    features: tuple[str, ...]  # the columns the lookup adds (those already in the DataFrame are kept)
    data: DataFrame  # the feature table as of resolution time


def _join_as_of(df: DataFrame, lookup: _ResolvedLookup) -> DataFrame:
    """`df` left-joined with, per row, the latest feature row of the same key at or before the row's time.

    An as-of join in the DataFrame API: candidate feature rows (same key, feature time <= row time)
    ranked newest first per (key, row time), the first kept, then joined back to every row of `df`.
    A feature row dated after the row's time is never a candidate, so the future cannot leak in.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = list(lookup.spec.lookup_key)
    table_keys = [F.col(table_key).alias(key) for table_key, key in zip(lookup.table.entity_keys, keys)]
    if not lookup.features:
        return df
    if lookup.spec.timestamp_lookup_key is None or lookup.table.timestamp_key is None:
        exact = lookup.data.select(*table_keys, *lookup.features)
        return df.join(exact, keys, "left")
    as_of = lookup.spec.timestamp_lookup_key
    feature_rows = lookup.data.select(
        *table_keys, F.col(lookup.table.timestamp_key).alias(_FEATURE_TS), *lookup.features
    )
    points = df.select(*keys, as_of).distinct()
    candidates = points.join(feature_rows, keys, "inner").where(F.col(_FEATURE_TS) <= F.col(as_of))
    newest_first = Window.partitionBy(*keys, as_of).orderBy(F.col(_FEATURE_TS).desc())
    latest = (
        candidates.withColumn(_RANK, F.row_number().over(newest_first))
        .where(F.col(_RANK) == 1)
        .drop(_RANK, _FEATURE_TS)
    )
    return df.join(latest, [*keys, as_of], "left")


class LocalTrainingSet:
    """A training set in the local world: lazy until load_df."""

    def __init__(
        self, df: DataFrame, lookups: list[_ResolvedLookup], labels: list[str], exclude_columns: Sequence[str]
    ) -> None:
        self.df, self.lookups, self.labels, self.exclude_columns = df, lookups, labels, list(exclude_columns)

    @property
    def output_columns(self) -> list[str]:
        """The labels' own columns, then the looked-up features, then the labels (the SDK's order)."""
        source = [column for column in self.df.columns if column not in self.labels]
        added = [feature for lookup in self.lookups for feature in lookup.features]
        return [column for column in [*source, *added] if column not in self.exclude_columns] + self.labels

    def load_df(self) -> DataFrame:
        joined = self.df
        for lookup in self.lookups:
            joined = _join_as_of(joined, lookup)
        return joined.select(*self.output_columns)


class LocalFeatureStore:
    """Feature tables in a TableStore, with their keys in a one-row metadata table beside each.

    Why a metadata table: it works the same on every TableStore (local Delta paths and a Spark
    catalog), is itself versioned and atomic, and never touches the feature table's own schema or
    history. The feature table itself appears with its first load, so a fresh run's version 0 is
    real data, as it was before feature tables existed.
    """

    def __init__(self, spark: SparkSession, tables: TableStore) -> None:
        self.spark = spark
        self.tables = tables
        # the specs this store has confirmed or written: a load right after ensure_table needs no
        # second read of the metadata (only ensure_table changes it)
        self._confirmed: dict[TableName, FeatureTableSpec] = {}

    @staticmethod
    def metadata_name(name: TableName) -> TableName:
        return TableName(name.catalog, name.schema, f"{name.table}__feature_spec")

    def table_spec(self, name: TableName) -> FeatureTableSpec | None:
        if name in self._confirmed:
            return self._confirmed[name]
        metadata = self.metadata_name(name)
        if not self.tables.exists(metadata):
            return None
        row = self.tables.read(metadata).first()
        if row is None:
            return None
        return FeatureTableSpec(name, tuple(row["primary_keys"]), row["timestamp_key"], row["description"] or "")

    def ensure_table(self, spec: FeatureTableSpec, schema: StructType) -> FeatureTableSpec:
        _check_key_columns(spec, schema)
        existing = self.table_spec(spec.name)
        if existing is not None:
            if not existing.same_keys(spec):
                raise ConfigError(
                    f"{spec.name} is already a feature table with primary keys {list(existing.primary_keys)} "
                    f"and timestamp key {existing.timestamp_key!r}",
                    where=f"feature table {spec.name}",
                    fix=f"keep the keys, or drop {spec.name} and {self.metadata_name(spec.name)} "
                    "to recreate it with the new ones",
                )
            self._confirmed[spec.name] = existing
            return existing
        if self.tables.exists(spec.name):  # a table from before feature tables: adopt it if it has the keys
            _check_key_columns(spec, self.tables.read(spec.name).schema)
        metadata = self.spark.createDataFrame(
            [(list(spec.primary_keys), spec.timestamp_key, spec.description)],
            "primary_keys array<string>, timestamp_key string, description string",
        )
        self.tables.overwrite(self.metadata_name(spec.name), metadata)
        self._confirmed[spec.name] = spec
        log.info(
            "%s is a feature table: primary keys %s, timestamp key %s",
            spec.name,
            list(spec.primary_keys),
            spec.timestamp_key,
        )
        return spec

    def _require_spec(self, name: TableName) -> FeatureTableSpec:
        spec = self.table_spec(name)
        if spec is None:
            raise ConfigError(
                f"{name} is not a feature table",
                where=f"feature table {name}",
                fix="run the features stage (it makes the table a feature table), or call ensure_table",
            )
        return spec

    def truncate_and_load(self, name: TableName, df: DataFrame) -> int | None:
        spec = self._require_spec(name)
        _check_key_columns(spec, df.schema)
        _check_key_values(spec, df)
        return self.tables.overwrite(name, df)

    def _resolve(self, df: DataFrame, lookups: Sequence[FeatureLookupSpec]) -> list[_ResolvedLookup]:
        """Check each lookup against the DataFrame and its table, the way the SDK does, and pin the data."""
        resolved = []
        taken = set(df.columns)
        for lookup in lookups:
            table = self._require_spec(lookup.table)
            _check_lookup_columns(df, lookup)
            where = f"lookup on {lookup.table}"
            if len(lookup.lookup_key) != len(table.entity_keys):
                raise ConfigError(
                    f"lookup_key {list(lookup.lookup_key)} does not match the table's keys {list(table.entity_keys)}",
                    where=where,
                    fix="one lookup column per entity key",
                )
            if table.timestamp_key is not None and lookup.timestamp_lookup_key is None:
                raise ConfigError(
                    f"{lookup.table} has timestamp key {table.timestamp_key!r} but the lookup has no "
                    "timestamp_lookup_key",
                    where=where,
                    fix="name the DataFrame's time column",
                )
            data = self.tables.read(lookup.table)
            pairs = list(zip(table.entity_keys, lookup.lookup_key))
            if lookup.timestamp_lookup_key is not None and table.timestamp_key is not None:
                pairs.append((table.timestamp_key, lookup.timestamp_lookup_key))
            for table_key, key in pairs:
                table_type, df_type = data.schema[table_key].dataType, df.schema[key].dataType
                if table_type != df_type:
                    raise ConfigError(
                        f"key {table_key!r} of {lookup.table} is {table_type.simpleString()} "
                        f"but {key!r} is {df_type.simpleString()}",
                        where=where,
                        fix="cast the DataFrame's column to the table's type",
                    )
            available = [column for column in data.columns if column not in table.primary_keys]
            names = list(lookup.feature_names) if lookup.feature_names is not None else sorted(available)
            unknown = [name for name in names if name not in available]
            if unknown:
                raise ConfigError(
                    f"features {unknown} are not in {lookup.table}", where=where, fix=f"one of {available}"
                )
            # a feature the DataFrame already has is not looked up: the DataFrame's value wins (SDK rule)
            features = tuple(name for name in names if name not in taken)
            taken.update(features)
            resolved.append(_ResolvedLookup(lookup, table, features, data))
        return resolved

    def create_training_set(
        self,
        labels: DataFrame,
        lookups: Sequence[FeatureLookupSpec],
        *,
        label: str | Sequence[str] | None,
        exclude_columns: Sequence[str] = (),
    ) -> LocalTrainingSet:
        label_names = _as_list(label)
        _check_labels(labels, label_names, exclude_columns)
        return LocalTrainingSet(labels, self._resolve(labels, lookups), label_names, exclude_columns)


# --- the Databricks world --------------------------------------------------------------------


class UnityCatalogFeatureTables(CatalogTableStore):
    """The catalog TableStore, except that an overwrite keeps the table's schema and constraints.

    CatalogTableStore.overwrite sets overwriteSchema, which replaces the Delta schema with the
    DataFrame's (all columns nullable: delta-io/delta#873) and so fights the NOT NULL primary-key
    constraint that makes a Unity Catalog table a feature table. This writes what the Feature Store
    client itself wrote for `write_table(mode="overwrite")` before FeatureEngineeringClient allowed
    only "merge": a Delta overwrite of the existing table with mergeSchema. One commit (readers see
    the old rows or the new ones), table identity, constraints, properties and history kept, so
    RESTORE TABLE brings the previous version back; new feature columns are added, a dropped one
    stays as nulls (dropping a column is a deliberate ALTER TABLE, not a side effect of a load).
    """

    def overwrite(self, name: TableName, df: DataFrame) -> int | None:
        if not self.exists(name):
            return super().overwrite(name, df)
        writer = df.write.format("delta").mode("overwrite").option("mergeSchema", "true")
        self._noted(writer).saveAsTable(name.quoted)  # a write unit's commit names its unit (mlops.journal)
        return self.version(name)


class DatabricksFeatureStore:
    """Feature tables in Unity Catalog through a `FeatureEngineeringClient` (injected, or built on first use).

    How truncate-and-load is done, and why: `FeatureEngineeringClient.write_table` supports only
    mode="merge" (an upsert: rows missing from the new load would survive) and its docs say to
    `DELETE FROM` the table or drop and recreate it to overwrite. Both break the pipeline's rule:
    DELETE then merge is two commits (readers can see an empty table, a failed merge leaves it
    empty), and drop/recreate loses the history that makes the previous version restorable. So the
    adapter checks the keys itself (non-null and unique, as the SDK's write does) and loads through
    `tables.overwrite`, which in production is `UnityCatalogFeatureTables`: one Delta commit on the
    existing table that keeps its primary-key constraint, i.e. it stays a feature table.

    The client only creates tables (from a schema, so the data goes in through the same checked,
    atomic load), reads their keys and builds training sets.
    """

    def __init__(self, tables: TableStore, client: Any | None = None, *, feature_lookup: Any | None = None) -> None:
        self.tables = tables
        self._client = client
        self._feature_lookup = feature_lookup

    @classmethod
    def in_unity_catalog(cls, spark: SparkSession, tables: TableStore, table_store: str) -> DatabricksFeatureStore:
        """The env/feature_store=databricks world: feature tables are Unity Catalog tables, so the
        env's own table store (`table_store`, the class env/tables names) must be the catalog one."""
        from hydra.utils import get_class

        store = get_class(table_store)
        if not issubclass(store, CatalogTableStore) or issubclass(store, VersionedCatalogTableStore):
            raise ConfigError(
                f"Databricks feature tables live in Unity Catalog, but the env's tables are {store.__name__}",
                where="env/feature_store=databricks with env/tables",
                fix="env/tables=catalog, or env/feature_store=local",
            )
        return cls(UnityCatalogFeatureTables(spark))

    @staticmethod
    def _sdk() -> ModuleType:
        try:
            import databricks.feature_engineering as sdk
        except ImportError:
            raise ConfigError(
                "the Databricks Feature Engineering client is not installed",
                where="env/feature_store=databricks (package databricks-feature-engineering)",
                fix="run on Databricks Runtime ML (it ships the client), or pip install "
                "databricks-feature-engineering in the job environment; or use env=local",
            ) from None
        return sdk

    @property
    def client(self) -> Any:
        """Built on first use: stages that touch no feature table never need the package."""
        if self._client is None:
            self._client = self._sdk().FeatureEngineeringClient()
        return self._client

    @property
    def feature_lookup(self) -> Any:
        if self._feature_lookup is None:
            self._feature_lookup = self._sdk().FeatureLookup
        return self._feature_lookup

    def table_spec(self, name: TableName) -> FeatureTableSpec | None:
        if not self.tables.exists(name):
            return None
        try:
            table = self.client.get_table(name=str(name))
        except ValueError:  # the SDK's answer for a Unity Catalog table without a primary key constraint
            return None
        timestamp_keys = list(table.timestamp_keys or [])
        return FeatureTableSpec(
            name, tuple(table.primary_keys), timestamp_keys[0] if timestamp_keys else None, table.description or ""
        )

    def ensure_table(self, spec: FeatureTableSpec, schema: StructType) -> FeatureTableSpec:
        _check_key_columns(spec, schema)
        if self.tables.exists(spec.name):
            # create_table on an existing table returns it without checking its keys, so check them here
            existing = self.table_spec(spec.name)
            if existing is None:
                keys = ", ".join(spec.entity_keys) + (
                    f", {spec.timestamp_key} TIMESERIES" if spec.timestamp_key else ""
                )
                raise ConfigError(
                    f"{spec.name} exists but is not a feature table (no primary key constraint)",
                    where=f"feature table {spec.name}",
                    fix=f"ALTER TABLE {spec.name} ALTER COLUMN <each key> SET NOT NULL; ALTER TABLE "
                    f"{spec.name} ADD CONSTRAINT {spec.name.table}_pk PRIMARY KEY ({keys}); "
                    "or drop the table and re-run",
                )
            if not existing.same_keys(spec):
                raise ConfigError(
                    f"{spec.name} is already a feature table with primary keys {list(existing.primary_keys)} "
                    f"and timestamp key {existing.timestamp_key!r}",
                    where=f"feature table {spec.name}",
                    fix="keep the keys, or drop the feature table (FeatureEngineeringClient.drop_table) "
                    "to recreate it with the new ones",
                )
            return existing
        self.client.create_table(
            name=str(spec.name),
            primary_keys=list(spec.primary_keys),
            timeseries_column=spec.timestamp_key,
            schema=schema,
            description=spec.description or None,
        )
        log.info(
            "created feature table %s: primary keys %s, timestamp key %s",
            spec.name,
            list(spec.primary_keys),
            spec.timestamp_key,
        )
        return spec

    def truncate_and_load(self, name: TableName, df: DataFrame) -> int | None:
        spec = self.table_spec(name)
        if spec is None:
            raise ConfigError(
                f"{name} is not a feature table",
                where=f"feature table {name}",
                fix="run the features stage (it makes the table a feature table), or call ensure_table",
            )
        _check_key_columns(spec, df.schema)
        _check_key_values(spec, df)
        return self.tables.overwrite(name, df)

    def create_training_set(
        self,
        labels: DataFrame,
        lookups: Sequence[FeatureLookupSpec],
        *,
        label: str | Sequence[str] | None,
        exclude_columns: Sequence[str] = (),
    ) -> Any:
        label_names = _as_list(label)
        _check_labels(labels, label_names, exclude_columns)  # the same errors as the local world
        for lookup in lookups:
            _check_lookup_columns(labels, lookup)
        feature_lookups = [
            self.feature_lookup(
                table_name=str(lookup.table),
                lookup_key=list(lookup.lookup_key),
                timestamp_lookup_key=lookup.timestamp_lookup_key,
                feature_names=list(lookup.feature_names) if lookup.feature_names is not None else None,
            )
            for lookup in lookups
        ]
        return self.client.create_training_set(
            df=labels,
            feature_lookups=feature_lookups,
            label=label if label is None or isinstance(label, str) else label_names,
            exclude_columns=list(exclude_columns),
        )


def make_feature_store(env: DictConfig, spark: SparkSession, tables: TableStore) -> FeatureStore:
    """The env's feature store: env/feature_store is one YAML file per class (conf/env/feature_store)."""
    from mlops.config import build

    return build(env.feature_store, spark=spark, tables=tables)
