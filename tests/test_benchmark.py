"""The benchmark's pandas reference computes the same features as the Spark pipeline, on real data.

The benchmark's Spark/pandas ratio only means something if both compute the same thing, and its
"same values" column only means something if the comparison can tell them apart.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hydra.utils import instantiate

from clv.features import compute_features_repurchase_fn
from clv.studies import benchmark
from mlops.calendar import monthly_dates
from mlops.config import compose_config
from mlops.sources import canonical_columns, make_source
from tests.conftest import local_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "lib" / "clv" / "data" / "online_retail_de_fr.csv.gz"


@pytest.fixture(scope="module")
def both(spark):
    cfg = local_config(
        REPO / ".local" / "unused", "country=DE", "use_case/source=csv", f"use_case.source.path={SAMPLE}"
    )
    raw = make_source(cfg.use_case.source).read(spark)
    canonical = canonical_columns(raw, cfg.use_case.source.columns)
    transactions = instantiate(cfg.use_case.cleaning.fn)(canonical)
    snapshots = monthly_dates(dt.date(2010, 6, 9), dt.date(2011, 12, 8), 1)
    spark_features = compute_features_repurchase_fn(
        transactions, "invoice_date", snapshots[0], snapshots[-1], key_columns=list(cfg.use_case.key_columns)
    ).toPandas()
    reference = benchmark.pandas_features(
        benchmark.pandas_transactions(SAMPLE, cfg), snapshots, cfg.model.features.fn.windows_days
    )
    return benchmark, spark_features, reference


def test_pandas_and_spark_give_the_same_features_on_the_real_sample(both):
    benchmark, spark_features, reference = both
    check = benchmark.compare_features(spark_features, reference)
    assert check["equal"], check
    assert check["rows"] == len(reference) > 1000
    assert set(reference.columns) - {"snapshot_date", "customer_id"} <= set(spark_features.columns)


def test_the_comparison_sees_a_changed_value_and_a_missing_row(both):
    benchmark, spark_features, reference = both
    nudged = reference.copy()
    nudged.loc[nudged.index[5], "revenue_90d"] += 0.01
    check = benchmark.compare_features(spark_features, nudged)
    assert not check["equal"] and check["mismatched_columns"] == {"revenue_90d": 1}
    dropped = benchmark.compare_features(spark_features, reference.iloc[1:])
    assert not dropped["equal"] and dropped["left_only"] == 1


@pytest.mark.parametrize(
    ("text", "lines", "name"),
    [("100k", 100_000, "100k"), ("1M", 1_000_000, "1M"), ("2.5m", 2_500_000, "2500k"), ("10M", 10_000_000, "10M")],
)
def test_sizes_read_as_written_and_name_their_datasets(text, lines, name):
    assert benchmark.parse_size(text) == lines
    assert benchmark.label(lines) == name


def test_each_dataset_runs_every_country_at_once_in_its_own_world_with_the_command_lines_overrides(tmp_path):
    settings = compose_config(config_name="benchmark", overrides=[f"benchmark.out={tmp_path}"]).benchmark
    root = tmp_path / "runs" / "synthetic-100k"
    cfg = compose_config([*benchmark._world(settings, ["seed=7"], root), "use_case.source.path=unused.csv"])
    assert cfg.country.source_value is None and cfg.use_case.tables.features == "clv_repurchase_features_all"
    assert cfg.env.storage_root == str(root) and cfg.seed == 7
    assert str(cfg.use_case.snapshots.start_date) == settings.snapshot_start


def test_each_stage_line_gives_its_seconds_rows_and_spark_jobs_and_the_report_shows_them(caplog):
    """The line the benchmark parses is the one mlops.cli logs: written here by the cli's own code."""
    import logging

    from mlops import cli
    from mlops.runtime import StageResult

    counted = StageResult(
        "extract", {"transactions": 0}, {"source": 10, "transactions": 8}, seconds=1.25, spark_jobs=7, spark_queries=3
    )
    remote = StageResult("features", {"features": 0, "labels": 0}, {"features": 3, "labels": 2}, seconds=2.5)
    writes_nothing = StageResult("train", seconds=4.0, spark_jobs=2, spark_queries=2)
    with caplog.at_level(logging.INFO, logger="mlops.cli"):
        for result in (counted, remote, writes_nothing):
            cli.log_stage_done(result)
    parsed = [benchmark.STAGE_LINE.search(record.getMessage()) for record in caplog.records]
    assert [match.groups() for match in parsed] == [
        ("extract", "1.2", "{'source': 10, 'transactions': 8}", "7", "3"),
        ("features", "2.5", "{'features': 3, 'labels': 2}", "unknown", "unknown"),
        ("train", "4.0", None, "2", "2"),
    ]
    assert "{}" not in caplog.records[-1].getMessage()
    sample = {
        "overrides": "`model=repurchase` `country=DE`",
        "wall_seconds": 30.0,
        "stages": [
            {"stage": "extract", "seconds": 1.25, "rows": {}, "peak_rss": 0, "jobs": 7, "queries": 3},
            {"stage": "features", "seconds": 2.5, "rows": {}, "peak_rss": 0, "jobs": None, "queries": None},
        ],
    }
    row = {"dataset": "d", "stage": "extract", "rows_in": 10, "seconds": 1.25, "peak_gib": 1.0, "rows_per_second": 8.0}
    text = benchmark.markdown([{**row, "jobs": 7, "queries": 3}], sample)
    assert "| d | extract | 10 | 1.2 | 7 | 3 | 1.00 | 8 |" in text
    assert "| extract | 1.2 | 7 | 3 |" in text and "| features | 2.5 |  |  |" in text
