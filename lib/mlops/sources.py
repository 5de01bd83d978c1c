"""Reading the raw source of a use case: bundled package data, a file path, or a table."""
from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from mlops.tables import TableName

log = logging.getLogger(__name__)


def column(name: str) -> "F.Column":
    """A source column by its exact name: quoted, with backticks inside doubled, since source
    columns may hold spaces, dots or backticks that Spark would otherwise parse."""
    return F.col("`" + str(name).replace("`", "``") + "`")


def describe_source(source: DictConfig) -> str:
    if source.kind == "bundled":
        return f"bundled {source.bundled_package}/{source.bundled_file}"
    if source.kind == "table":
        return f"table {source.table}"
    return f"{source.kind} {source.path}"


def _read_bundled(spark: SparkSession, source: DictConfig) -> DataFrame:
    # Read on the driver and ship the rows: over Spark Connect or Databricks Connect the
    # cluster cannot see files inside this package. Bounded: the sample is ~31k lines.
    import pandas as pd

    resource = importlib.resources.files(source.bundled_package).joinpath(source.bundled_file)
    with importlib.resources.as_file(resource) as path:
        if not Path(path).is_file():
            raise SourceError(f"bundled sample {source.bundled_file} is missing from package "
                              f"{source.bundled_package}", where="use_case.source",
                              fix="reinstall the project (pip install -e .) or set use_case.source.kind")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # the sample: UTF-8, comma-separated
        except (OSError, EOFError, ValueError) as exc:
            raise SourceError(f"cannot read bundled sample: {exc}", where=str(path),
                              fix="reinstall the project to restore the file") from None
    frame = frame.replace("", None)
    return spark.createDataFrame(frame, schema=", ".join(f"`{c}` string" for c in frame.columns))


def _check_local_path(path: str) -> None:
    # Only paths that look local can be checked here; cluster paths (dbfs:, /Volumes, s3:) are
    # checked by Spark, whose error is wrapped below.
    if "://" not in path and not path.startswith(("dbfs:", "/Volumes/")) and not any(c in path for c in "*?["):
        if not Path(path).exists():
            raise SourceError(f"source file {path} does not exist", where="use_case.source.path",
                              fix="point use_case.source.path at an existing CSV/Parquet file or folder")


def _check_gzip(path: str, kind: str) -> None:
    # Spark's gzip reader stops quietly at a truncated end: the rows before the cut would load as
    # if they were the whole extract. Reading the stream through once here makes that an error.
    import gzip
    import zlib

    files = [Path(path)] if Path(path).is_file() else sorted(Path(path).rglob("*.gz"))
    for file in (f for f in files if f.suffix == ".gz"):
        try:
            with gzip.open(file, "rb") as stream:
                while stream.read(1 << 22):
                    pass
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"cannot read {kind} source: {file.name} is not a complete gzip file ({exc})",
                              where=str(file), fix="re-export or re-download the file; it was cut off or damaged") from None


def source_table_name(source: DictConfig) -> "TableName":
    """use_case.source.table as a checked catalog.schema.table name (nothing in it reaches SQL unchecked)."""
    from mlops.tables import TableName

    parts = str(source.table or "").split(".")
    if len(parts) != 3:
        raise ConfigError(f"source table {source.table!r} is not catalog.schema.table",
                          where="use_case.source.table", fix="e.g. use_case.source.table=main.raw.online_retail")
    return TableName.of(*parts)


def read_source(spark: SparkSession, source: DictConfig) -> DataFrame:
    """The raw source with every column as a string, so one contract checks CSV, Parquet and tables."""
    kind = source.kind
    if kind == "bundled":
        raw = _read_bundled(spark, source)
    elif kind in ("csv", "parquet"):
        if not source.path:
            raise ConfigError(f"use_case.source.kind={kind} needs a path", where="use_case.source.path",
                              fix="e.g. use_case.source.path=/data/online_retail.csv.gz")
        _check_local_path(str(source.path))
        if kind == "csv" and "://" not in str(source.path) and Path(str(source.path)).exists():
            _check_gzip(str(source.path), kind)
        reader = (spark.read.option("header", "true").option("mode", "FAILFAST")
                  .option("encoding", source.get("encoding") or "UTF-8").option("sep", source.get("delimiter") or ",")
                  if kind == "csv" else spark.read)
        try:
            raw = reader.csv(str(source.path)) if kind == "csv" else reader.parquet(str(source.path))
        except Exception as exc:  # Spark's AnalysisException et al.: keep the first line only
            raise SourceError(f"cannot read {kind} source: {str(exc).splitlines()[0][:300]}",
                              where=str(source.path), fix="check the path and the file format") from None
    elif kind == "table":
        raw = spark.table(source_table_name(source).quoted)
    else:
        raise ConfigError(f"unknown source kind {kind!r}", where="use_case.source.kind",
                          fix="one of bundled, csv, parquet, table")
    return raw.select(*(column(name).cast("string").alias(name) for name in raw.columns))
