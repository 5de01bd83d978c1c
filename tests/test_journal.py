"""The write journal: what a kill between a unit's writes leaves on disk, and how the next run undoes it.

A kill cannot be staged inside the test process, so these tests make the journal calls that
RunContext.write_all makes, then stop where the process would have died. The killed scripts
themselves are in integration_tests/test_faults.py.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from omegaconf import open_dict
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.errors import ConcurrentRunError
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
    unit = begin_unit(ctx.journal, ctx.cfg, names, before, ctx.started_at, "split")
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


def test_a_single_table_write_is_one_commit_and_not_journaled(ctx):
    names = {key: ctx.table_name(key) for key in ("train", "test")}
    one = begin_unit(ctx.journal, ctx.cfg, {"train": names["train"]}, {"train": None}, ctx.started_at, "split")
    assert one is None


def test_a_catalog_world_keeps_its_journal_in_a_table_of_its_schema(ctx, spark):
    """Databricks: the storage root does not outlive the job's compute, so no folder there."""
    from mlops.journal import TableJournal, journal_for

    with open_dict(ctx.cfg):
        ctx.cfg.env.tables._target_ = "mlops.tables.CatalogTableStore"
    assert journal_folder(ctx.cfg) is None
    journal = journal_for(ctx.cfg, spark)
    assert isinstance(journal, TableJournal) and journal.shared
    assert str(journal.name) == "local.clv.clv_write_journal"
    assert journal.lease.total_seconds() == ctx.cfg.journal.lease_minutes * 60


def test_a_record_cut_off_before_its_rename_is_ignored(ctx, spark, split_tables):
    folder = journal_folder(ctx.cfg)
    (folder / ".20250101T000000000000_split_0badf00d.json.1234abcd.tmp").write_text('{"stage": "spl')
    assert open_units(ctx.cfg) == []
    assert list(folder.iterdir()) == []


# -- catalog worlds: every job sees the journal, so a unit's owner and lease decide ---------------------


class SharedJournal:
    """The TableJournal's rules (shared, leases renewed on every record) over a list, so the ownership
    logic runs without a catalog; the table itself runs on a Spark Connect server in
    integration_tests/test_remote.py."""

    shared = True

    def __init__(self, lease_minutes: float) -> None:
        self.lease, self.open = dt.timedelta(minutes=lease_minutes), {}

    def save(self, unit) -> None:
        unit.lease_until = (dt.datetime.now(dt.UTC) + self.lease).isoformat()
        self.open[unit.unit_id] = unit

    def finish(self, unit) -> None:
        self.open.pop(unit.unit_id, None)

    def units(self):
        return list(self.open.values())

    def where(self, unit) -> str:
        return f"shared journal (unit {unit.unit_id})"


@pytest.fixture
def catalog_like(ctx, split_tables):
    """The context with a shared journal, and a split unit of job run 77 killed after its first write."""
    journal = SharedJournal(lease_minutes=90)
    ctx.__dict__["journal"] = journal  # RunContext.journal is a cached property
    with open_dict(ctx.cfg):
        ctx.cfg.lineage.job_run_id = "77"
    unit = killed_after_first_write(ctx, ctx.spark, split_tables)
    assert unit.owner_run == "77" and unit.lease_until is not None
    return ctx, journal, unit


def test_a_catalog_unit_of_this_job_run_is_undone(catalog_like, split_tables):
    ctx, journal, _ = catalog_like
    assert len(recover_unfinished_writes(ctx, ["split"])) == 1  # a retry of the task, in job run 77
    assert ctx.tables.version(split_tables["train"]) == 2 and journal.open == {}


def test_a_live_unit_of_another_job_run_stops_the_run_and_is_left_alone(catalog_like, split_tables):
    ctx, journal, unit = catalog_like
    with open_dict(ctx.cfg):
        ctx.cfg.lineage.job_run_id = "88"  # another job run, while 77's lease runs
    with pytest.raises(ConcurrentRunError) as caught:
        recover_unfinished_writes(ctx, ["train"])  # train reads train and test
    assert caught.value.exit_code == 8 and "job run 77" in caught.value.message
    assert "which may still be writing" in caught.value.message
    assert ctx.tables.version(split_tables["train"]) == 1 and list(journal.open) == [unit.unit_id]


def test_a_unit_whose_lease_has_run_out_is_undone_by_any_run(catalog_like, split_tables):
    ctx, journal, unit = catalog_like
    unit.lease_until = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    with open_dict(ctx.cfg):
        ctx.cfg.lineage.job_run_id = "88"
    assert len(recover_unfinished_writes(ctx, ["train"])) == 1
    assert ctx.tables.version(split_tables["train"]) == 2 and journal.open == {}


def test_a_unit_on_other_tables_is_none_of_this_runs_business(catalog_like, split_tables):
    """A scoring job's monitor must not undo (or wait for) a training job's live split."""
    ctx, journal, unit = catalog_like
    with open_dict(ctx.cfg):
        ctx.cfg.lineage.job_run_id = "88"
    assert recover_unfinished_writes(ctx, ["monitor"]) == []
    assert ctx.tables.version(split_tables["train"]) == 1 and list(journal.open) == [unit.unit_id]


def test_by_hand_a_unit_has_no_owner_run_and_only_its_lease_counts(ctx):
    from mlops.journal import WriteUnit

    now = dt.datetime.now(dt.UTC)
    unit = WriteUnit("u", "split", "repurchase", now.isoformat(), 1, "h", [], owner_run=None)
    unit.lease_until = (now + dt.timedelta(minutes=5)).isoformat()
    assert not unit.dead_for(None, now) and not unit.dead_for("77", now)
    assert unit.dead_for(None, now + dt.timedelta(minutes=6))
    unit.lease_until = None  # a record from before leases: nobody renews it
    assert unit.dead_for("77", now)
