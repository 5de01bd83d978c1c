"""The write journal: what a kill between a unit's writes leaves on disk, and how the next run undoes it.

A kill cannot be staged inside the test process, so these tests make the journal calls that
RunContext.write_all makes, then stop where the process would have died. The killed scripts
themselves are in integration_tests/test_faults.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest
from omegaconf import open_dict
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.errors import ConcurrentRunError
from mlops.journal import (
    TableJournal,
    UnfinishedWriteError,
    begin_unit,
    journal_folder,
    open_units,
    recover_unfinished_writes,
)
from tests.conftest import local_config


def rows(spark, n, label=1):
    return spark.range(n).select(F.col("id").cast("string").alias("customer_id"), F.lit(label).alias("repurchase"))


@pytest.fixture
def split_tables(ctx, spark):
    """train (3 rows) and test (2 rows), each at version 0, written whole by one unit."""
    ctx.write_all({"train": rows(spark, 3), "test": rows(spark, 2)})
    return {key: ctx.table_name(key) for key in ("train", "test")}


def killed_at(ctx, spark, names, point):
    """What write_all leaves when its process dies at `point` of a split unit that writes train
    (5 rows) then test (4 rows): `begun` (recorded, nothing committed), `commit:<key>` (that
    table committed, the kill before the journal said so), `recorded:<key>` (the journal said so).
    """
    before = {key: ctx.tables.version(name) for key, name in names.items()}
    unit = begin_unit(ctx.journal, ctx.cfg, names, before, ctx.started_at, "split")
    for key, n in (("train", 5), ("test", 4)):
        if point == "begun":
            return unit
        with unit.commits("write"):  # as write_all commits: each commit names the unit
            version = ctx.tables.overwrite(names[key], rows(spark, n, label=0))
        if point == f"commit:{key}":
            return unit
        unit.wrote(key, version)
        if point == f"recorded:{key}":
            return unit
    raise ValueError(f"no kill point {point}")


def killed_after_first_write(ctx, spark, names, *, recorded=True):
    """What write_all leaves when its process dies after `train` was written, before `test`.

    `recorded=False`: the kill came between train's commit and the journal saying so.
    """
    return killed_at(ctx, spark, names, "recorded:train" if recorded else "commit:train")


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
    assert (
        "clv_repurchase_train_de is at version 2, which the unit did not write (it wrote version 1; before it: "
        "version 0)" in caught.value.message
    )
    assert caught.value.exit_code == 11
    assertDataFrameEqual(ctx.read("train"), rows(spark, 7))  # nothing restored
    assert ctx.tables.version(split_tables["test"]) == 0
    assert len(open_units(ctx.cfg)) == 1  # kept for a person to decide


def test_a_recovery_killed_after_one_restore_is_finished_by_the_next_run(ctx, spark, split_tables):
    unit = killed_after_first_write(ctx, spark, split_tables)
    with unit.commits("write"):
        unit.wrote("test", ctx.tables.overwrite(split_tables["test"], rows(spark, 4, label=0)))
    # the recovery's first restore lands (train 1 -> 2), then that process dies too, before its record says so
    with unit.commits("restore"):
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


def test_a_cut_off_record_stops_every_stage_naming_its_file_and_nothing_is_restored(ctx, spark, split_tables, caplog):
    """A record is replaced atomically, so only a damaged disk or a hand edit cuts one off; which
    versions its unit wrote is then unknown, so no table may be touched."""
    from mlops.cli import run_stage

    unit = killed_after_first_write(ctx, spark, split_tables)
    record = Path(unit.where)
    whole = record.read_text(encoding="utf-8")
    record.write_text(whole[: len(whole) // 2], encoding="utf-8")

    with pytest.raises(UnfinishedWriteError) as caught:
        recover_unfinished_writes(ctx)
    error = caught.value
    assert error.exit_code == 11 and error.where == str(record)
    assert "cannot be read" in error.what and "nothing was restored" in error.what
    assert "look at the history of" in error.fix and f"delete {record}" in error.fix
    assert ctx.tables.version(split_tables["train"]) == 1 and ctx.tables.version(split_tables["test"]) == 0
    assertDataFrameEqual(ctx.read("train"), rows(spark, 5, label=0))
    assert record.read_text(encoding="utf-8") == whole[: len(whole) // 2], "the record is left for a person"

    # what every script of this use case and country does: one line naming the file, exit 11
    with caplog.at_level(logging.ERROR, logger="mlops.cli"), pytest.raises(SystemExit) as exited:
        run_stage("train", ctx.cfg)
    assert exited.value.code == 11
    assert f"where: {record}" in caplog.text and "JSONDecodeError" not in caplog.text
    assert ctx.tables.version(split_tables["train"]) == 1 and ctx.tables.version(split_tables["test"]) == 0


# -- a kill at any point of a unit, in either world: only versions the unit itself committed are undone ---


@contextlib.contextmanager
def catalog_world(spark, tmp_path):
    """A catalog world's run context on real tables: a Spark catalog without Delta, the journal a
    table of its schema; job run 77 both writes and recovers, so its units are surely dead."""
    from mlops.runtime import RunContext

    schema = f"journal_{uuid.uuid4().hex[:8]}"
    cfg = local_config(
        tmp_path / "catalog",
        "env/tables=versioned_catalog",
        "env.catalog=spark_catalog",
        f"env.schema={schema}",
        "lineage.job_run_id=77",
    )
    spark.sql(f"CREATE SCHEMA spark_catalog.{schema}")
    try:
        catalog = RunContext.from_config(cfg, spark=spark)
        assert isinstance(catalog.journal, TableJournal)
        yield catalog
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


@pytest.fixture(params=["local", "catalog"], ids=["local world", "catalog world"])
def world(request, ctx, spark, tmp_path):
    """A run context of either journal kind: the local world (Delta paths, a journal folder) or a catalog world."""
    if request.param == "local":
        yield ctx
        return
    with catalog_world(spark, tmp_path) as catalog:
        yield catalog


def split_in(world, spark):
    """train (3 rows) and test (2 rows), each at version 0, written whole by one unit."""
    world.write_all({"train": rows(spark, 3), "test": rows(spark, 2)})
    return {key: world.table_name(key) for key in ("train", "test")}


def drop_record_as_told(world, unit, fix: str) -> None:
    """What the error's fix tells a person to do once they have looked: drop the unit's record."""
    if isinstance(world.journal, TableJournal):
        statement = world.journal.finish_statement(unit.unit_id)
        assert statement in fix
        world.spark.sql(statement)
    else:
        assert f"delete {unit.where}" in fix
        Path(unit.where).unlink()


@pytest.mark.parametrize(
    "point, undone",
    [("begun", []), ("commit:train", ["train"]), ("recorded:train", ["train"]), ("commit:test", ["train", "test"])],
)
def test_a_unit_killed_at_any_point_is_undone_to_the_versions_before_it(world, spark, caplog, point, undone):
    names = split_in(world, spark)
    killed_at(world, spark, names, point)

    with caplog.at_level(logging.WARNING, logger="mlops.journal"):
        assert len(recover_unfinished_writes(world, ["split"])) == 1
    assertDataFrameEqual(world.read("train"), rows(spark, 3))
    assertDataFrameEqual(world.read("test"), rows(spark, 2))
    message = caplog.records[-1].getMessage()
    for key, name in names.items():
        assert (f"{name} from version 1 back to version 0" in message) == (key in undone), message
    if not undone:
        assert "none of its writes had landed" in message
    assert open_units(world.cfg, spark) == []


@pytest.mark.parametrize(
    "point, foreign, unit_wrote",
    [("begun", "train", None), ("commit:train", "train", 1), ("commit:test", "test", 1)],
    ids=["killed once begun", "killed after the train commit", "killed after the test commit"],
)
def test_a_version_another_writer_made_after_a_kill_survives_and_a_person_is_asked(
    world, spark, point, foreign, unit_wrote
):
    """The tester's case: a unit killed before its commit left a record saying which table it was
    about to write; a version another writer made since must not be taken for the unit's."""
    names = split_in(world, spark)
    unit = killed_at(world, spark, names, point)
    theirs = world.tables.overwrite(names[foreign], rows(spark, 7, label=2))  # another writer, after the kill
    assert theirs == (1 if unit_wrote is None else 2)
    versions = {key: world.tables.version(name) for key, name in names.items()}

    with pytest.raises(UnfinishedWriteError) as caught:
        recover_unfinished_writes(world, ["split"])
    error = caught.value
    wrote = "it wrote none" if unit_wrote is None else f"it wrote version {unit_wrote}"
    assert (
        f"{names[foreign]} is at version {theirs}, which the unit did not write ({wrote}; before it: version 0)"
        in error.what
    )
    assert "nothing was restored" in error.what and "a split run of repurchase" in error.what
    if point == "commit:test":  # the unit's own train version stays too, and the message says whose it is
        assert f"{names['train']} is at version 1, which the unit wrote (before it: version 0)" in error.what
    assert error.exit_code == 11 and error.where == unit.where
    assert "look at the history of" in error.fix
    assert {key: world.tables.version(name) for key, name in names.items()} == versions
    assertDataFrameEqual(world.read(foreign), rows(spark, 7, label=2))
    assert [open.unit_id for open in open_units(world.cfg, spark)] == [unit.unit_id]

    # the person keeps the tables as they are: with the record gone as the fix says, runs go on
    drop_record_as_told(world, unit, error.fix)
    assert recover_unfinished_writes(world, ["split"]) == []
    assert {key: world.tables.version(name) for key, name in names.items()} == versions
    assertDataFrameEqual(world.read(foreign), rows(spark, 7, label=2))


def test_an_unreadable_record_in_the_journal_table_stops_the_run_naming_the_unit(spark, tmp_path):
    """The catalog world's cut-off record: a unit's latest row whose record is not JSON (a hand edit)."""
    from mlops.journal import JOURNAL_SCHEMA

    with catalog_world(spark, tmp_path) as catalog:
        names = split_in(catalog, spark)
        unit = killed_at(catalog, spark, names, "recorded:train")
        journal = catalog.journal
        damaged = (
            unit.unit_id,
            journal.use_case,
            journal.country,
            99,
            "open",
            '{"stage": "split", "tab',
            dt.datetime(2025, 1, 1),
        )
        spark.createDataFrame([damaged], JOURNAL_SCHEMA).write.insertInto(str(journal.name))

        with pytest.raises(UnfinishedWriteError) as caught:
            recover_unfinished_writes(catalog, ["split"])
        error = caught.value
        assert error.exit_code == 11 and error.where == f"{journal.name} (unit {unit.unit_id})"
        assert "cannot be read" in error.what and "nothing was restored" in error.what
        assert catalog.tables.version(names["train"]) == 1 and catalog.tables.version(names["test"]) == 0
        assertDataFrameEqual(catalog.read("train"), rows(spark, 5, label=0))

        drop_record_as_told(catalog, unit, error.fix)  # after looking at the tables, as the fix says
        assert recover_unfinished_writes(catalog, ["split"]) == []
        assert catalog.tables.version(names["train"]) == 1


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

    def how_to_drop(self, unit) -> str:
        return f"drop unit {unit.unit_id} from the list"


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
