"""The load_sample stage: the packaged sample into a target's own source table, idempotently, never on real data."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from mlops.errors import ConfigError
from mlops.runtime import RunContext
from mlops.stages.load_sample import load_sample
from mlops.tables import TableName
from tests.conftest import local_config

SOURCE = TableName("local", "raw", "clv_source_transactions")
TABLE_SOURCE = ("use_case/source=table", f"use_case.source.table={SOURCE}")


@pytest.fixture
def table_ctx(tmp_path, spark):
    return RunContext.from_config(local_config(tmp_path / "root", *TABLE_SOURCE), spark=spark)


def test_the_sample_is_loaded_once_replaced_when_it_differs_and_a_repeat_writes_nothing(table_ctx):
    first = load_sample(table_ctx)
    assert first.details == {"table": str(SOURCE), "written": True}
    assert first.rows["source"] == table_ctx.tables.read(SOURCE).count() == 31421  # lib/clv/data/README.md
    assert sorted(table_ctx.tables.read(SOURCE).columns) == sorted(
        c for c in table_ctx.cfg.use_case.source.columns.values() if c is not None
    )
    # a table that differs (here: one line short) is replaced whole, in one write
    table_ctx.tables.overwrite(SOURCE, table_ctx.tables.read(SOURCE).limit(31420))
    second = load_sample(table_ctx)
    assert second.details["written"] is True and second.tables["source"] == first.tables["source"] + 2
    third = load_sample(table_ctx)
    assert third.details["written"] is False and third.tables == second.tables
    assert table_ctx.tables.version(SOURCE) == second.tables["source"]


def test_an_env_that_serves_real_customers_never_gets_the_sample(table_ctx):
    with open_dict(table_ctx.cfg):
        table_ctx.cfg.env.allow_bundled_sample = False
        table_ctx.cfg.env.name = "prod"
    with pytest.raises(ConfigError, match="env prod serves real customers: loading the packaged sample would replace"):
        load_sample(table_ctx)
    assert not table_ctx.tables.exists(SOURCE)


def test_the_sample_goes_only_into_a_table_source(ctx):
    with pytest.raises(ConfigError, match="use_case/source=bundled") as raised:
        load_sample(ctx)  # the local default reads the sample directly: there is no table to fill
    assert "use_case.source.table=" in raised.value.fix


@pytest.mark.parametrize(
    "target",
    [
        "local.clv.clv_transactions_de",  # extract's output in this env
        "prod.clv.clv_transactions_fr",  # another env's and country's: the name, not the catalog, says whose
        "local.clv.CLV_REPURCHASE_FEATURES_DE",  # Unity Catalog names are case-insensitive
        "dev.clv.clv_ltv_bucket_predictions_gb",
        "local.clv.clv_write_journal",
    ],
)
def test_the_sample_never_replaces_a_table_the_pipeline_writes(tmp_path, spark, target):
    ctx = RunContext.from_config(
        local_config(tmp_path / "root", "use_case/source=table", f"use_case.source.table={target}"), spark=spark
    )
    with pytest.raises(ConfigError, match="the pipeline itself writes") as raised:
        load_sample(ctx)
    assert raised.value.where == "use_case.source.table"
    assert "var.source_table" in raised.value.fix
    # refused before anything is read or written: no table, no validation
    assert not ctx.tables.exists(TableName(*target.split(".")))
    assert ctx.validations == []
