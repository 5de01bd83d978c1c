"""Reading sources: a large gzip file is decompressed on its check's read-through, so Spark parses it on every core."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mlops.errors import SourceError
from mlops.sources import CsvSource, _bytes


def _gzip_csv(path: Path, lines: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as out:
        out.write("invoice,amount\n")
        out.writelines(f"{i},{i % 97}.5\n" for i in range(lines))
    return path


@pytest.fixture
def open_cost(spark):
    """Spark's cost of opening a file, set per test and put back."""
    before = spark.conf.get("spark.sql.files.openCostInBytes")
    yield lambda value: spark.conf.set("spark.sql.files.openCostInBytes", value)
    spark.conf.set("spark.sql.files.openCostInBytes", before)


@pytest.mark.parametrize("folder", [False, True])
def test_a_gzip_source_above_spark_s_open_cost_is_parsed_in_several_partitions(spark, tmp_path, open_cost, folder):
    source = _gzip_csv(tmp_path / ("parts/part-0.csv.gz" if folder else "lines.csv.gz"), 20_000)  # ~60 KB
    open_cost("8k")
    df = CsvSource(path=str(source.parent if folder else source)).read(spark)
    assert df.rdd.getNumPartitions() > 1
    # every line once, the header once
    assert sorted(int(row.invoice) for row in df.select("invoice").collect()) == list(range(20_000))


def test_a_small_gzip_source_is_read_as_it_is(spark, tmp_path, open_cost):
    source = _gzip_csv(tmp_path / "lines.csv.gz", 2_000)
    open_cost("64m")
    df = CsvSource(path=str(source)).read(spark)
    assert df.rdd.getNumPartitions() == 1 and df.count() == 2_000
    assert str(source) in df.inputFiles()[0]


def test_a_cut_off_gzip_source_is_an_error_also_when_it_would_be_decompressed(spark, tmp_path, open_cost):
    source = _gzip_csv(tmp_path / "lines.csv.gz", 20_000)
    source.write_bytes(source.read_bytes()[:-200])
    open_cost("8k")
    with pytest.raises(SourceError, match="not a complete gzip file"):
        CsvSource(path=str(source)).read(spark)


@pytest.mark.parametrize(("text", "value"), [("4194304", 4194304), ("4m", 4 << 20), ("1k", 1024), ("2GB", 2 << 30)])
def test_spark_byte_sizes_read_as_spark_reads_them(text, value):
    assert _bytes(text) == value


def test_gzip_parts_as_many_as_the_cores_are_read_as_they_are(spark, tmp_path, open_cost):
    parts = int(spark.conf.get("spark.default.parallelism"))
    for part in range(parts):
        _gzip_csv(tmp_path / "parts" / f"part-{part}.csv.gz", 5_000)
    open_cost("8k")
    df = CsvSource(path=str(tmp_path / "parts")).read(spark)
    assert all(file.endswith(".csv.gz") for file in df.inputFiles()) and df.count() == parts * 5_000
