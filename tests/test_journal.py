"""The write journal: what a kill between a unit's writes leaves on disk, and how the next run undoes it.

A kill cannot be staged inside the test process, so these tests make the journal calls that
RunContext.write_all makes, then stop where the process would have died. The killed scripts
themselves are in integration_tests/test_faults.py.
"""

from __future__ import annotations

import logging

import pytest
from omegaconf import open_dict
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.journal import (
    InFlight,
    UnfinishedWriteError,
    begin_unit,
    journal_folder,
    open_units,
    recover_unfinished_writes,
)


def rows(spark, n, label=1):
    return spark.range(n).select(F.col("id").cast("string").alias("customer_id"), F.lit(label).alias("repurchase"))


@pytest.fixture
def split_tables(ctx, spark):
    """train (3 rows) and test (2 rows), each at version 0, written whole by one unit."""
    ctx.write_all({"train": rows(spark, 3), "test": rows(spark, 2)})
    return {key: ctx.table_name(key) for key in ("train", "test")}


def killed_after_first_write(ctx, spark, names, *, recorded=True):
    """What write_all leaves when its process dies after `train` was written, before `test`.

    `recorded=False`: the kill came between train's commit and the journal saying so.
    """
    before = {key: ctx.tables.version(name) for key, name in names.items()}
    unit = begin_unit(ctx.cfg, names, before, ctx.started_at)
    version = ctx.tables.overwrite(names["train"], rows(spark, 5, label=0))
    if recorded:
        unit.wrote("train", version)
    return unit


def test_a_finished_unit_leaves_no_record(ctx, split_tables):
    assert journal_folder(ctx.cfg).is_dir()  # the unit was recorded ...
    assert open_units(ctx.cfg) == []  # ... and its record dropped once both tables were written


@pytest.mark.parametrize("recorded", [True, False], ids=["write recorded", "commit not yet recorded"])
def test_a_unit_killed_between_its_writes_is_undone_once_by_the_next_run(ctx, spark, split_tables, caplog, recorded):
    killed_after_first_write(ctx, spark, split_tables, recorded=recorded)
    assert ctx.tables.version(split_tables["train"]) == 1 and ctx.tables.version(split_tables["test"]) == 0

    with caplog.at_level(logging.WARNING, logger="mlops.journal"):
        recovered = recover_unfinished_writes(ctx)
    assert len(recovered) == 1
    assert ctx.tables.version(split_tables["train"]) == 2  # a restore is a new version with the old data
    assertDataFrameEqual(ctx.read("train"), rows(spark, 3))
    assert ctx.tables.version(split_tables["test"]) == 0  # never written: left alone
    message = caplog.records[-1].getMessage()
    assert "a split run of repurchase" in message
    assert "local.clv.clv_repurchase_train_de from version 1 back to version 0 (now version 2)" in message
    assert "clv_repurchase_test_de from" not in message

    assert recover_unfinished_writes(ctx) == []  # exactly once
    assert ctx.tables.version(split_tables["train"]) == 2


def test_a_table_the_unit_created_is_removed(ctx, spark):
    names = {key: ctx.table_name(key) for key in ("train", "test")}
    killed_after_first_write(ctx, spark, names)
    assert ctx.tables.exists(names["train"]) and not ctx.tables.exists(names["test"])
    recover_unfinished_writes(ctx)
    assert not ctx.tables.exists(names["train"]) and not ctx.tables.exists(names["test"])
    assert open_units(ctx.cfg) == []


def test_a_table_written_after_the_killed_unit_is_not_clobbered(ctx, spark, split_tables):
    killed_after_first_write(ctx, spark, split_tables)
    ctx.tables.overwrite(split_tables["train"], rows(spark, 7))  # someone wrote train since (version 2)

    with pytest.raises(UnfinishedWriteError) as caught:
        recover_unfinished_writes(ctx)
    assert "clv_repurchase_train_de is at version 2, which this unit did not write" in caught.value.message
    assert caught.value.exit_code == 11
    assertDataFrameEqual(ctx.read("train"), rows(spark, 7))  # nothing restored
    assert ctx.tables.version(split_tables["test"]) == 0
    assert len(open_units(ctx.cfg)) == 1  # kept for a person to decide


def test_a_recovery_killed_after_one_restore_is_finished_by_the_next_run(ctx, spark, split_tables):
    unit = killed_after_first_write(ctx, spark, split_tables)
    unit.wrote("test", ctx.tables.overwrite(split_tables["test"], rows(spark, 4, label=0)))
    # the recovery's first restore lands (train 1 -> 2), then that process dies too
    unit.in_flight = InFlight("train", "restore", 1)
    unit.save()
    ctx.tables.restore(split_tables["train"], 0)

    recover_unfinished_writes(ctx)
    assert ctx.tables.version(split_tables["train"]) == 2, "a landed restore is not repeated"
    assert ctx.tables.version(split_tables["test"]) == 2
    assertDataFrameEqual(ctx.read("train"), rows(spark, 3))
    assertDataFrameEqual(ctx.read("test"), rows(spark, 2))
    assert open_units(ctx.cfg) == []


def test_a_unit_is_never_stacked_on_an_unfinished_one(ctx, spark, split_tables):
    """Its `before` would be the half-written state; the run that recovers comes first."""
    killed_after_first_write(ctx, spark, split_tables)
    with pytest.raises(UnfinishedWriteError, match="not yet undone") as caught:
        ctx.write_all({"train": rows(spark, 6), "test": rows(spark, 6)})
    assert "run any stage through its script" in caught.value.message
    assert ctx.tables.version(split_tables["train"]) == 1 and ctx.tables.version(split_tables["test"]) == 0


def test_an_exception_after_a_commit_rolls_that_write_back_too(ctx, spark, split_tables, monkeypatch):
    overwrite, count, committed = ctx.tables.overwrite, ctx.tables.rows, []

    def overwrite_noting_the_commit(name, df):
        version = overwrite(name, df)
        committed.append(name)
        return version

    def count_failing_after_the_train_write(name):  # write_all counts the rows it has just written
        if name in committed:
            raise RuntimeError("executor lost while counting")
        return count(name)

    monkeypatch.setattr(ctx.tables, "overwrite", overwrite_noting_the_commit)
    monkeypatch.setattr(ctx.tables, "rows", count_failing_after_the_train_write)
    with pytest.raises(RuntimeError, match="executor lost"):
        ctx.write_all({"train": rows(spark, 5), "test": rows(spark, 4)})
    monkeypatch.undo()
    assertDataFrameEqual(ctx.read("train"), rows(spark, 3))
    assert ctx.tables.version(split_tables["train"]) == 2  # written (1), then restored (2)
    assert ctx.tables.version(split_tables["test"]) == 0
    assert open_units(ctx.cfg) == []


def test_only_multi_table_writes_to_delta_paths_are_journaled(ctx, spark):
    names = {key: ctx.table_name(key) for key in ("train", "test")}
    assert begin_unit(ctx.cfg, {"train": names["train"]}, {"train": None}, ctx.started_at) is None  # one commit
    with open_dict(ctx.cfg):
        ctx.cfg.env.tables._target_ = (
            "mlops.tables.CatalogTableStore"  # Databricks: the storage root does not outlive the job cluster
        )
    assert journal_folder(ctx.cfg) is None
    assert begin_unit(ctx.cfg, names, {"train": None, "test": None}, ctx.started_at) is None


def test_a_record_cut_off_before_its_rename_is_ignored(ctx, spark, split_tables):
    folder = journal_folder(ctx.cfg)
    (folder / ".20250101T000000000000_split_0badf00d.json.1234abcd.tmp").write_text('{"stage": "spl')
    assert open_units(ctx.cfg) == []
    assert list(folder.iterdir()) == []
