"""Reading the raw source of a use case: one class per kind, named by use_case/source (conf/use_case/source).

Every source returns every column as a string, so one contract (use_case.quality.source) checks
CSV, Parquet, tables and the packaged sample alike. A new kind is one class here (or anywhere
importable) with `read(spark)` and `describe()`, and one YAML file naming it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from omegaconf import DictConfig
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from mlops.tables import TableName

log = logging.getLogger(__name__)


def column(name: str) -> F.Column:
    """A source column by its exact name: quoted, with backticks inside doubled, since source
    columns may hold spaces, dots or backticks that Spark would otherwise parse."""
    return F.col("`" + str(name).replace("`", "``") + "`")


class Source:
    """What every source has: the canonical name -> source column map and the timestamp format
    (read by extract and the cleaning function through config)."""

    # the option of use_case/source that names this class, for messages
    kind = ""
    # the packaged sample, refused where env.allow_bundled_sample is false
    packaged_sample = False

    def __init__(self, columns: Any = None, timestamp_format: str | None = None) -> None:
        self.columns, self.timestamp_format = columns, timestamp_format

    def describe(self) -> str:
        raise NotImplementedError

    def load(self, spark: SparkSession) -> DataFrame:
        raise NotImplementedError

    def read(self, spark: SparkSession) -> DataFrame:
        """The raw source with every column as a string."""
        raw = self.load(spark)
        return raw.select(*(column(name).cast("string").alias(name) for name in raw.columns))


class BundledSource(Source):
    """A CSV file inside an installed package (the use case's sample)."""

    kind = "bundled"
    packaged_sample = True

    def __init__(self, package: str, file: str, **common: Any) -> None:
        super().__init__(**common)
        self.package, self.file = package, file

    def describe(self) -> str:
        return f"bundled {self.package}/{self.file}"

    def load(self, spark: SparkSession) -> DataFrame:
        # Read on the driver and ship the rows: over Spark Connect or Databricks Connect the
        # cluster cannot see files inside this package. Bounded: the sample is ~31k lines.
        import pandas as pd

        resource = importlib.resources.files(self.package).joinpath(self.file)
        with importlib.resources.as_file(resource) as path:
            if not Path(path).is_file():
                raise SourceError(
                    f"bundled sample {self.file} is missing from package {self.package}",
                    where="use_case.sample",
                    fix="reinstall the project (pip install -e .) or choose use_case/source=csv",
                )
            try:
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # the sample: UTF-8, comma-separated
            except (OSError, EOFError, ValueError) as exc:
                raise SourceError(
                    f"cannot read bundled sample: {exc}",
                    where=str(path),
                    fix="reinstall the project to restore the file",
                ) from None
        frame = frame.replace("", None)
        return spark.createDataFrame(frame, schema=", ".join(f"`{c}` string" for c in frame.columns))


class _FileSource(Source):
    def __init__(self, path: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.path = path

    def describe(self) -> str:
        return f"{self.kind} {self.path}"

    def _reader(self, spark: SparkSession) -> Any:
        return spark.read

    def load(self, spark: SparkSession) -> DataFrame:
        if not self.path:
            raise ConfigError(
                f"use_case/source={self.kind} needs a path",
                where="use_case.source.path",
                fix="e.g. use_case.source.path=/data/online_retail.csv.gz",
            )
        path = str(self.path)
        _check_local_path(path)
        read = path
        if self.kind == "csv" and "://" not in path and Path(path).exists():
            staging = _staging_for(spark, Path(path))
            _check_gzip(path, self.kind, into=staging)
            read = str(staging or path)
        try:
            return getattr(self._reader(spark), self.kind)(read)
        except Exception as exc:  # Spark's AnalysisException et al.: keep the first line only
            raise SourceError(
                f"cannot read {self.kind} source: {str(exc).splitlines()[0][:300]}",
                where=path,
                fix="check the path and the file format",
            ) from None


class CsvSource(_FileSource):
    """CSV with a header row; gzip files are read through once first (a cut-off file is an error)."""

    kind = "csv"

    def __init__(self, path: str | None = None, encoding: str = "UTF-8", delimiter: str = ",", **common: Any) -> None:
        super().__init__(path, **common)
        self.encoding, self.delimiter = encoding, delimiter

    def _reader(self, spark: SparkSession) -> Any:
        return (
            spark.read.option("header", "true")
            .option("mode", "FAILFAST")
            .option("encoding", self.encoding or "UTF-8")
            .option("sep", self.delimiter or ",")
        )


class ParquetSource(_FileSource):
    kind = "parquet"


class TableSource(Source):
    """A table of the Spark catalog (Unity Catalog on Databricks)."""

    kind = "table"

    def __init__(self, table: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.table = table

    def describe(self) -> str:
        return f"table {self.table}"

    def name(self) -> TableName:
        """use_case.source.table as a checked catalog.schema.table name (nothing in it reaches SQL unchecked)."""
        from mlops.tables import TableName

        parts = str(self.table or "").split(".")
        if len(parts) != 3:
            raise ConfigError(
                f"source table {self.table!r} is not catalog.schema.table",
                where="use_case.source.table",
                fix="e.g. use_case.source.table=main.raw.online_retail",
            )
        return TableName.of(*parts)

    def load(self, spark: SparkSession) -> DataFrame:
        return spark.table(self.name().quoted)


def canonical_columns(raw: DataFrame, columns: Any) -> DataFrame:
    """The source's columns under their canonical names (use_case.source.columns). A canonical
    column mapped to null is one this source does not have: the cleaning function decides what
    stands in for it."""
    mapped = {name: source_name for name, source_name in columns.items() if source_name is not None}
    return raw.select(*(column(source_name).alias(name) for name, source_name in mapped.items()))


def make_source(source: DictConfig) -> Source:
    """The use case's source (use_case/source: one YAML file per class)."""
    from mlops.config import build

    return build(source, _convert_="all")


def _check_local_path(path: str) -> None:
    # Only paths that look local can be checked here; cluster paths (dbfs:, /Volumes, s3:) are
    # checked by Spark, whose error is wrapped below.
    local = "://" not in path and not path.startswith(("dbfs:", "/Volumes/")) and not any(c in path for c in "*?[")
    if local and not Path(path).exists():
        raise SourceError(
            f"source file {path} does not exist",
            where="use_case.source.path",
            fix="point use_case.source.path at an existing CSV/Parquet file or folder",
        )


def _check_gzip(path: str, kind: str, *, into: Path | None = None) -> None:
    """Spark's gzip reader stops quietly at a truncated end: the rows before the cut would load as
    if they were the whole extract. Reading the stream through once here makes that an error; with
    `into`, the same read writes each file decompressed there (see _staging_for)."""
    import gzip
    import zlib

    root = Path(path)
    files = [root] if root.is_file() else sorted(root.rglob("*.gz"))
    for file in (f for f in files if f.suffix == ".gz"):
        target = None if into is None else into / (file.relative_to(root) if root.is_dir() else Path(file.name))
        try:
            with gzip.open(file, "rb") as stream, _opened(target) as out:
                while block := stream.read(1 << 22):
                    if out is not None:
                        out.write(block)
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(
                f"cannot read {kind} source: {file.name} is not a complete gzip file ({exc})",
                where=str(file),
                fix="re-export or re-download the file; it was cut off or damaged",
            ) from None


@contextlib.contextmanager
def _opened(target: Path | None) -> Iterator[BinaryIO | None]:
    if target is None:
        yield None
        return
    target = target.with_suffix("")  # lines.csv.gz -> lines.csv
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        yield out


def _staging_for(spark: SparkSession, source: Path) -> Path | None:
    """A folder for the source decompressed, where that lets Spark parse it on every core; else None.

    Gzip cannot be split: Spark parses a .gz file as one partition, on one core, and the contract,
    the cleaning and the cached table after it stay on that core (spreading the rows after the
    parse cost more than it saved: docs/performance.md). A plain CSV is split by Spark itself, so
    the read-through that checks the gzip writes it decompressed on the way. Only where every file
    is gzip, there are fewer of them than spark.default.parallelism, and their size is above
    Spark's own cost of opening a file
    (spark.sql.files.openCostInBytes): the bundled sample (0.4 MB) is read as it is. The folder
    lives until the process ends; the data it holds is the source's, on the same disk.
    """
    files = [source] if source.is_file() else [f for f in source.rglob("*") if f.is_file() and f.name[0] not in "._"]
    if not files or any(file.suffix != ".gz" for file in files):
        return None
    try:
        open_cost = _bytes(spark.conf.get("spark.sql.files.openCostInBytes") or "4194304")
        cores = int(spark.conf.get("spark.default.parallelism", None) or 0)
    except ValueError:
        return None
    # as many files as partitions are parsed in parallel already (the synthetic 10M's eight parts)
    if len(files) >= cores or sum(file.stat().st_size for file in files) <= open_cost:
        return None
    staging = Path(tempfile.mkdtemp(prefix="ac-mlops-source-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    log.info("%s: gzip, which Spark parses on one core; decompressed to %s to parse on all", source, staging)
    return staging


def _bytes(text: str) -> int:
    """A Spark byte size setting: 4194304, 4m, 4MB."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower().removesuffix("b") or "0"
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)
