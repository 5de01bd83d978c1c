"""Reading sources: a large gzip file is parsed once, then spread over the cores."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mlops.sources import CsvSource, _bytes


def _gzip_csv(path: Path, lines: int) -> Path:
    with gzip.open(path, "wt") as out:
        out.write("invoice,amount\n")
        out.writelines(f"{i},{i % 97}.5\n" for i in range(lines))
    return path


@pytest.mark.parametrize(("open_cost", "partitions"), [("1k", 4), ("64m", 1)])
def test_a_gzip_file_above_spark_s_open_cost_is_spread_after_the_parse(spark, tmp_path, open_cost, partitions):
    source = _gzip_csv(tmp_path / "lines.csv.gz", 20_000)  # ~60 KB compressed
    before = spark.conf.get("spark.sql.files.openCostInBytes")
    spark.conf.set("spark.sql.files.openCostInBytes", open_cost)
    try:
        df = CsvSource(path=str(source)).read(spark)
        assert df.rdd.getNumPartitions() == (
            int(spark.conf.get("spark.sql.shuffle.partitions")) if partitions > 1 else 1
        )
        # every line once, whichever partition it went to
        assert sorted(int(row.invoice) for row in df.select("invoice").collect()) == list(range(20_000))
    finally:
        spark.conf.set("spark.sql.files.openCostInBytes", before)


@pytest.mark.parametrize(("text", "value"), [("4194304", 4194304), ("4m", 4 << 20), ("1k", 1024), ("2GB", 2 << 30)])
def test_spark_byte_sizes_read_as_spark_reads_them(text, value):
    assert _bytes(text) == value
