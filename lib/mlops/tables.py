"""Tables by validated name, read and atomically overwritten through one interface, two worlds."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from omegaconf import DictConfig

from mlops.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# Unity Catalog accepts more, but names reach SQL and file paths: letters, digits, underscore only.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

# The note every commit made inside `user_metadata` carries (Delta's commitInfo.userMetadata). Ambient,
# like Delta's own session setting, so that every path to a store's commit (a feature store's load
# too) carries it without each signature passing it on.
_USER_METADATA: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_metadata", default=None)
_NOTE = re.compile(r"[A-Za-z0-9_ .:-]{1,200}")
# where a store without Delta keeps a version's note: a property of that version's physical table
NOTE_PROPERTY = "mlops.user_metadata"


@contextlib.contextmanager
def user_metadata(note: str) -> Iterator[None]:
    """Commits made inside carry `note`, which `history` gives back as the version's "userMetadata".

    The write journal marks its units' commits this way: a commit that a kill cut off from its
    journal record is still known to be the unit's, and a version someone else wrote is not.
    """
    if not _NOTE.fullmatch(note):  # it reaches SQL text: plain characters only
        raise ValueError(f"a commit note is letters, digits, spaces and _ . : - only, not {note!r}")
    token = _USER_METADATA.set(note)
    try:
        yield
    finally:
        _USER_METADATA.reset(token)


def _commit_properties() -> Any:
    from deltalake import CommitProperties

    note = _USER_METADATA.get()
    return None if note is None else CommitProperties(custom_metadata={"userMetadata": note})


@dataclass(frozen=True)
class TableName:
    """catalog.schema.table, each part a plain identifier, so config can never inject SQL or paths."""

    catalog: str
    schema: str
    table: str

    def __post_init__(self) -> None:
        for part, value in (("catalog", self.catalog), ("schema", self.schema), ("table", self.table)):
            if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
                raise ConfigError(
                    f"invalid {part} name {value!r}",
                    where=f"table name {part}",
                    fix="use letters, digits and underscores only, not starting with a digit",
                )

    @classmethod
    def of(cls, catalog: object, schema: object, table: object) -> TableName:
        return cls(str(catalog), str(schema), str(table))

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    @property
    def quoted(self) -> str:
        return f"`{self.catalog}`.`{self.schema}`.`{self.table}`"


class TableStore(Protocol):
    """What stages may do with a table. Implementations differ only in where tables live."""

    def exists(self, name: TableName) -> bool: ...

    def read(self, name: TableName) -> DataFrame: ...

    def overwrite(self, name: TableName, df: DataFrame) -> int | None: ...

    def rows(self, name: TableName) -> int:
        """The rows in the table now, as cheaply as the store can tell (after a write: no read-back)."""
        ...

    def replace_dates(self, name: TableName, df: DataFrame, column: str, dates: Sequence[dt.date]) -> int | None:
        """Replace only the rows whose `column` is one of `dates` (one commit); keep the rest."""
        ...

    def version(self, name: TableName) -> int | None: ...

    def history(self, name: TableName) -> list[dict[str, Any]]:
        """One entry per version, newest first: its "version", and the note of `user_metadata`
        it was committed with as "userMetadata" (absent, or None, without one)."""
        ...

    def restore(self, name: TableName, version: int | None) -> None:
        """Undo a write: back to `version`, or gone if the table did not exist (None)."""
        ...


class DeltaPathTableStore:
    """Delta tables under a local root, written by deltalake and read by Spark.

    Writing goes through deltalake because delta-spark's jars come from Maven (unreachable
    offline); one overwrite is one Delta commit, so readers see the old version or the new one.
    Reading uses the snapshot's file list: a plain parquet read of the folder would also return
    files that an overwrite has logically removed.
    """

    LOCAL_FILES = True

    def __init__(self, spark: SparkSession, root: str | Path) -> None:
        self.spark = spark
        self.root = Path(root)

    def path(self, name: TableName) -> Path:
        return self.root / name.catalog / name.schema / name.table

    def exists(self, name: TableName) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(str(self.path(name)))

    def _table(self, name: TableName):
        from deltalake import DeltaTable

        try:
            return DeltaTable(str(self.path(name)))
        except Exception as exc:  # deltalake's DeltaError: a damaged or half-deleted _delta_log
            from mlops.errors import StorageError

            first = str(exc).strip().splitlines()[0][:300]
            raise StorageError(
                f"the Delta log of table {name} cannot be read: {first}",
                where=str(self.path(name) / "_delta_log"),
                fix="restore the table folder from a backup, or move it away and re-run the stage "
                "that writes it (it is rebuilt from its inputs)",
            ) from None

    def read(self, name: TableName) -> DataFrame:
        import pyarrow as pa

        table = self._table(name)
        files = table.file_uris()
        if not files:
            empty = pa.schema(table.schema().to_arrow()).empty_table()
            return self.spark.createDataFrame(empty)
        # the schema from the Delta log: Spark would otherwise start a job to read it from the files
        from pyspark.sql.pandas.types import from_arrow_schema

        return self.spark.read.schema(from_arrow_schema(pa.schema(table.schema().to_arrow()))).parquet(*files)

    def rows(self, name: TableName) -> int:
        """From the Delta log's per-file record counts, which delta-rs writes with every file: no
        Spark job. A file without them (another writer's) is counted by reading the table."""
        import pyarrow as pa

        counts = pa.table(self._table(name).get_add_actions(flatten=True)).column("num_records").to_pylist()
        if any(count is None for count in counts):
            return self.read(name).count()
        return int(sum(counts))

    @contextlib.contextmanager
    def _staged(self, df: DataFrame) -> Iterator[pa.RecordBatchReader]:
        """The result written by Spark's executors to a staging folder, streamed back batch by batch.

        Collecting it instead (`toArrow`) would hold the whole table in driver memory, which
        ends a 10M-line extract. Spark finishes the query before the first Delta byte is
        written, so a failing query still leaves the table untouched; the folder always goes.
        """
        import pyarrow as pa
        import pyarrow.dataset as ds
        from pyspark.sql.pandas.types import to_arrow_schema

        staging = self.root / "_staging" / uuid.uuid4().hex
        try:
            df.write.parquet(str(staging))
            # Spark's parquet types (INT96 timestamps, optional keys) back to what Spark declared
            schema = to_arrow_schema(df.schema, timezone="UTC")
            batches = (
                pa.Table.from_batches([batch]).cast(schema).to_batches()
                for batch in ds.dataset(str(staging), format="parquet").to_batches()
            )
            yield pa.RecordBatchReader.from_batches(schema, (b for table in batches for b in table))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # another write may be staging beside this one
                staging.parent.rmdir()

    @contextlib.contextmanager
    def _writing(self, name: TableName) -> Iterator[None]:
        """A storage fault (full, read-only) while writing a table, named by the table and its folder."""
        from mlops.errors import StorageError, storage_error

        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            fault = storage_error(exc)
            if fault is None:
                raise
            raise StorageError(
                f"{fault.what} (writing table {name})", where=str(self.path(name)), fix=fault.fix
            ) from exc

    def overwrite(self, name: TableName, df: DataFrame) -> int:
        with self._writing(name), self._staged(df) as data:
            return self.overwrite_arrow(name, data)

    def replace_dates(self, name: TableName, df: DataFrame, column: str, dates: Sequence[dt.date]) -> int:
        if not self.exists(name):
            return self.overwrite(name, df)
        from deltalake import write_deltalake

        with self._writing(name), self._staged(df) as data:
            write_deltalake(
                str(self.path(name)),
                data,
                mode="overwrite",
                predicate=date_predicate(column, dates),
                commit_properties=_commit_properties(),
            )
        return self._table(name).version()

    def overwrite_arrow(self, name: TableName, data: pa.Table | pa.RecordBatchReader) -> int:
        from deltalake import write_deltalake

        path = self.path(name)
        path.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(path), data, mode="overwrite", schema_mode="overwrite", commit_properties=_commit_properties()
        )
        return self._table(name).version()

    def version(self, name: TableName) -> int | None:
        return self._table(name).version() if self.exists(name) else None

    def history(self, name: TableName) -> list[dict[str, Any]]:
        return self._table(name).history() if self.exists(name) else []

    def restore(self, name: TableName, version: int | None) -> None:
        if version is None:
            shutil.rmtree(self.path(name), ignore_errors=True)
        elif self.exists(name):
            with self._writing(name):
                self._table(name).restore(version, commit_properties=_commit_properties())


class CatalogTableStore:
    """Tables in the Spark session's catalog: Unity Catalog on Databricks, a metastore elsewhere."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def exists(self, name: TableName) -> bool:
        return bool(self.spark.catalog.tableExists(str(name)))

    def read(self, name: TableName) -> DataFrame:
        return self.spark.table(name.quoted)

    def rows(self, name: TableName) -> int:
        # on Delta a count(*) is answered from the log's statistics, without scanning the files
        return self.read(name).count()

    def overwrite(self, name: TableName, df: DataFrame) -> int | None:
        # On Delta (Unity Catalog) an overwrite is one transaction; overwriteSchema lets
        # a new feature set replace the old one.
        self._noted(df.write.mode("overwrite").option("overwriteSchema", "true")).saveAsTable(name.quoted)
        return self.version(name)

    def replace_dates(self, name: TableName, df: DataFrame, column: str, dates: Sequence[dt.date]) -> int | None:
        if not self.exists(name):
            return self.overwrite(name, df)
        writer = df.write.mode("overwrite").option("replaceWhere", date_predicate(column, dates))
        self._noted(writer).saveAsTable(name.quoted)
        return self.version(name)

    @staticmethod
    def _noted(writer: Any) -> Any:
        note = _USER_METADATA.get()
        return writer if note is None else writer.option("userMetadata", note)

    def history(self, name: TableName) -> list[dict[str, Any]]:
        if not self.exists(name):
            return []
        try:
            rows = self.spark.sql(f"DESCRIBE HISTORY {name.quoted}").collect()
        except Exception:  # not a Delta table (e.g. a plain metastore): no history to give
            return []
        return [row.asDict() for row in rows]

    def version(self, name: TableName) -> int | None:
        history = self.history(name)
        return int(history[0]["version"]) if history else None

    def restore(self, name: TableName, version: int | None) -> None:
        if version is None:
            self.spark.sql(f"DROP TABLE IF EXISTS {name.quoted}")
            return
        with self._session_note():
            self.spark.sql(f"RESTORE TABLE {name.quoted} TO VERSION AS OF {int(version)}")

    @contextlib.contextmanager
    def _session_note(self) -> Iterator[None]:
        """RESTORE takes no write options: Delta reads the note from the session instead."""
        note, key = _USER_METADATA.get(), "spark.databricks.delta.commitInfo.userMetadata"
        if note is None:
            yield
            return
        noted = True
        try:
            self.spark.conf.set(key, note)
        except Exception as exc:  # a session that refuses the setting: the restore goes unnoted
            log.warning("the restore is committed without its note (%s refused: %s)", key, exc)
            noted = False
        try:
            yield
        finally:
            if noted:
                self.spark.conf.unset(key)


class VersionedCatalogTableStore(CatalogTableStore):
    """Tables in any Spark catalog without Delta (a Hive metastore behind a Spark Connect server,
    a standalone cluster): each write is a new physical table `<table>__v<N>`, and `<table>` is a
    view that is repointed in one metastore operation once the write has finished.

    That gives what Delta gives Unity Catalog: readers see the old data or the new, never a half;
    a failed write leaves the view where it was; earlier versions stay restorable (the last
    `keep_versions`). Two concurrent writers pick the same N and the second one fails cleanly.
    """

    VERSION_PROPERTY = "mlops.version"

    def __init__(self, spark: SparkSession, keep_versions: int = 5) -> None:
        super().__init__(spark)
        self.keep_versions = max(2, int(keep_versions))

    def _physical(self, name: TableName, version: int) -> TableName:
        return TableName(name.catalog, name.schema, f"{name.table}__v{version}")

    def _versions_present(self, name: TableName) -> list[int]:
        pattern = re.compile(rf"{re.escape(name.table)}__v(\d+)")
        tables = self.spark.sql(f"SHOW TABLES IN `{name.catalog}`.`{name.schema}`").collect()
        return sorted(int(m.group(1)) for row in tables if (m := pattern.fullmatch(row["tableName"])))

    def _ensure_schema(self, name: TableName) -> None:
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{name.catalog}`.`{name.schema}`")

    def version(self, name: TableName) -> int | None:
        if not self.exists(name):
            return None
        rows = self.spark.sql(f"SHOW TBLPROPERTIES {name.quoted} ('{self.VERSION_PROPERTY}')").collect()
        value = rows[0]["value"] if rows else None
        return int(value) if value is not None and str(value).isdigit() else None

    def history(self, name: TableName) -> list[dict[str, Any]]:
        if not self.exists(name):
            return []
        current = self.version(name)
        return [
            {"version": v, "current": v == current, "userMetadata": self._note_of(self._physical(name, v))}
            for v in reversed(self._versions_present(name))
        ]

    def _note_of(self, physical: TableName) -> str | None:
        rows = self.spark.sql(f"SHOW TBLPROPERTIES {physical.quoted}").collect()
        notes = [row["value"] for row in rows if row["key"] == NOTE_PROPERTY]
        return str(notes[0]) if notes else None

    def _point_view_at(self, name: TableName, version: int) -> None:
        self.spark.sql(
            f"CREATE OR REPLACE VIEW {name.quoted} TBLPROPERTIES ('{self.VERSION_PROPERTY}' = '{int(version)}') "
            f"AS SELECT * FROM {self._physical(name, version).quoted}"
        )

    def overwrite(self, name: TableName, df: DataFrame) -> int:
        self._ensure_schema(name)
        present = self._versions_present(name)
        version = (max(present) + 1) if present else 0
        # "error" (if exists): a concurrent writer that took the same version makes this one fail
        # cleanly. Spark Connect accepts only this spelling, not "errorifexists".
        df.write.mode("error").saveAsTable(self._physical(name, version).quoted)
        note = _USER_METADATA.get()
        if note is not None:  # before the view moves: a version that becomes current has its note
            self.spark.sql(
                f"ALTER TABLE {self._physical(name, version).quoted} SET TBLPROPERTIES ('{NOTE_PROPERTY}' = '{note}')"
            )
        self._point_view_at(name, version)
        self._drop_old_versions(name, keep={version})
        return version

    def replace_dates(self, name: TableName, df: DataFrame, column: str, dates: Sequence[dt.date]) -> int:
        if not self.exists(name):
            return self.overwrite(name, df)
        from pyspark.sql import functions as F

        kept = self.read(name).where(~F.expr(date_predicate(column, dates)))
        return self.overwrite(name, kept.unionByName(df))

    def restore(self, name: TableName, version: int | None) -> None:
        if version is None:
            self.spark.sql(f"DROP VIEW IF EXISTS {name.quoted}")
            for old in self._versions_present(name):
                self.spark.sql(f"DROP TABLE IF EXISTS {self._physical(name, old).quoted}")
        else:
            self._point_view_at(name, version)

    def _drop_old_versions(self, name: TableName, keep: set[int]) -> None:
        present = self._versions_present(name)
        for old in present[: max(0, len(present) - self.keep_versions)]:
            if old not in keep:
                self.spark.sql(f"DROP TABLE IF EXISTS {self._physical(name, old).quoted}")


def date_predicate(column: str, dates: Sequence[dt.date]) -> str:
    """`column IN ('YYYY-MM-DD', ...)` from real dates and a checked identifier: nothing to inject."""
    if not _IDENTIFIER.fullmatch(column):
        raise ConfigError(f"invalid column name {column!r}", where="replace_dates", fix="a plain identifier")
    days = ", ".join(f"'{dt.date.fromisoformat(str(day)).isoformat()}'" for day in dates)
    return f"{column} IN ({days})"


def make_table_store(env: DictConfig, spark: SparkSession) -> TableStore:
    """The env's table store: env/tables is one YAML file per class (conf/env/tables)."""
    from mlops.config import build

    return build(env.tables, spark=spark)


def keeps_local_files(env: DictConfig) -> bool:
    """Whether the env's tables are files on this machine's storage root, which a file lock and a
    write journal can guard (on Databricks, job queues do the one and Delta history the other)."""
    from hydra.utils import get_class

    return bool(getattr(get_class(env.tables._target_), "LOCAL_FILES", False))
