"""The write journal: a multi-table write that a kill cut in half is found, and undone, by the next run.

Two keepers of the records, one logic. A local world keeps them as files in its storage root
(`FolderJournal`), guarded by the run lock: a record there at a run's start is a dead process's. A
catalog world (Unity Catalog, a Spark Connect server) has no durable local disk and no lock, and
its jobs may run at once, so it keeps them in an append-only table of its own catalog and schema
(`TableJournal`: every job of the target sees it). There each unit names its owner (the job run,
`lineage.job_run_id`) and holds a lease that every record renews; a run undoes only a unit on the
tables it reads or writes, and only if the unit is surely dead: its own job run's (an earlier
attempt or task, which ended before this one began), or one whose lease has run out. A live unit
on those tables stops the run with a ConcurrentRunError instead, and is left as it is.

A unit undoes only versions it committed itself: those its record lists, and those whose commit
carries its note (`WriteUnit.commits`), since a kill can land between a commit and the record that
would list it. A version anyone else wrote since is never thrown away: the run stops and a person
decides, as it does when a record cannot be read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from omegaconf import DictConfig, OmegaConf

from mlops.errors import ConcurrentRunError, PipelineError
from mlops.tables import TableName, TableStore, user_metadata

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mlops.runtime import RunContext

log = logging.getLogger(__name__)


class UnfinishedWriteError(PipelineError):
    """A killed run's half-done write cannot be undone safely: a table has been written since, or the
    unit's record cannot be read. Nothing was restored; a person decides, then drops the record."""

    exit_code = 11


def journal_folder(cfg: DictConfig) -> Path | None:
    """Where a local world keeps its open write units; None on catalog worlds (TableJournal).

    Only worlds whose tables are local files (DeltaPathTableStore) keep the journal in a folder.
    Their storage root is durable, and recovery is safe because of the run lock that guards that
    root (`cli.run_lock`): a record still there when a run starts belongs to a process that died.
    """
    from mlops.tables import keeps_local_files

    if not keeps_local_files(cfg.env):
        return None
    return Path(cfg.env.storage_root) / "journal" / f"{cfg.use_case.name}_{cfg.country.suffix}"


@dataclass
class JournalTable:
    """One table of a unit: its version before the unit, and the versions the unit itself made
    (written, and restored by a roll-back), as far as the record got to say so."""

    key: str
    name: str
    before: int | None
    written: int | None = None
    restored: int | None = None

    @property
    def table_name(self) -> TableName:
        return TableName(*self.name.split("."))


@dataclass
class WriteUnit:
    """A stage's outputs written as one unit (RunContext.write_all), as recorded while it runs."""

    unit_id: str
    stage: str
    model: str
    run_started_at: str
    pid: int
    host: str
    tables: list[JournalTable]
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    owner_run: str | None = None  # the job run that writes it (lineage.job_run_id); None by hand
    lease_until: str | None = None  # renewed by each record on a catalog world; past it the unit is dead
    journal: Journal | None = field(default=None, repr=False, compare=False)

    # -- the record ----------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        # not asdict(self): it deep-copies every field first, the journal's Spark session too
        record = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "journal"}
        record["tables"] = [asdict(entry) for entry in self.tables]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], journal: Journal) -> WriteUnit:
        record = dict(record)
        record.pop("in_flight", None)  # records before commit notes guessed the commit under way
        tables = [JournalTable(**entry) for entry in record.pop("tables")]
        return cls(tables=tables, journal=journal, **record)

    def save(self) -> None:
        self._journal().save(self)

    def finish(self) -> None:
        """The unit is over (written whole, or undone): its record goes."""
        self._journal().finish(self)

    def _journal(self) -> Journal:
        if self.journal is None:
            raise ValueError(f"write unit {self.unit_id} belongs to no journal")
        return self.journal

    @property
    def where(self) -> str:
        return self._journal().where(self)

    # -- while writing -------------------------------------------------------------------------

    def note(self, op: str) -> str:
        """What the unit's commits carry (`op`: write or restore), so that each is known as its own."""
        return f"mlops write unit {self.unit_id} {op}"

    @contextlib.contextmanager
    def commits(self, op: str) -> Iterator[None]:
        """Commits made inside are the unit's: they carry its note (mlops.tables.user_metadata).

        The record lists a version only after it is committed; the note is part of the commit, so
        a kill in between cannot part the two, and a version without it is someone else's.
        """
        with user_metadata(self.note(op)):
            yield

    def wrote(self, key: str, version: int | None) -> None:
        """Record a committed write before the next one starts."""
        self._entry(key).written = version
        self.save()

    # -- undoing -------------------------------------------------------------------------------

    def roll_back(self, tables: TableStore) -> list[str]:
        """Put every table the unit wrote back to its version before the unit, then drop the record.

        All or nothing, and only the unit's own versions: a table is restored only if its current
        version is one the unit committed (its record says so, or the commit carries its note).
        A table at any other version, neither its version before the unit nor one of the unit's,
        was written since by someone else; restoring it would throw that write away, so nothing is
        restored, the record stays, and the run stops for a person to decide.
        Returns what was restored, one phrase per table.
        """
        plan: list[tuple[JournalTable, int | None]] = []
        states: list[str] = []
        foreign = False
        for entry in self.tables:
            current = tables.version(entry.table_name)
            if current == entry.before:
                states.append(f"{entry.name} {_at(current)}, as before the unit")
                continue
            history = tables.history(entry.table_name)
            if current in self._versions(history, entry, "restore"):
                states.append(f"{entry.name} {_at(current)}, restored to its version before the unit")
                continue
            wrote = self._versions(history, entry, "write")
            before = "before it: " + ("the table did not exist" if entry.before is None else f"version {entry.before}")
            if current in wrote:
                plan.append((entry, current))
                states.append(f"{entry.name} {_at(current)}, which the unit wrote ({before})")
                continue
            foreign = True
            made = "it wrote none" if not wrote else "it wrote version " + ", ".join(str(v) for v in sorted(wrote))
            states.append(f"{entry.name} {_at(current)}, which the unit did not write ({made}; {before})")
        if foreign:
            names = ", ".join(entry.name for entry in self.tables)
            raise UnfinishedWriteError(
                f"found {self.describe()}; a table has been written since, so nothing was restored: "
                + "; ".join(states),
                where=self.where,
                fix=f"look at the history of {names} (which run wrote each version) and decide. To keep the "
                f"tables as they are: {self._journal().how_to_drop(self)}. To go back to the versions before "
                "the unit: restore those tables by hand first (Delta RESTORE), then do the same",
            )
        done = []
        for entry, current in plan:
            with self.commits("restore"):
                tables.restore(entry.table_name, entry.before)
            entry.restored = tables.version(entry.table_name)
            self.save()
            was = "not existing" if entry.before is None else f"version {entry.before}"
            now = "" if entry.restored is None else f" (now version {entry.restored})"
            done.append(f"{entry.name} from version {current} back to {was}{now}")
        self.finish()
        return done

    def _versions(self, history: list[dict[str, Any]], entry: JournalTable, op: str) -> set[int]:
        """The table's versions the unit committed as `op`: the record's, and those with its note."""
        recorded = entry.written if op == "write" else entry.restored
        noted = {int(item["version"]) for item in history if item.get("userMetadata") == self.note(op)}
        return noted | ({recorded} if recorded is not None else set())

    def _entry(self, key: str) -> JournalTable:
        return next(entry for entry in self.tables if entry.key == key)

    def describe(self) -> str:
        owner = f"job run {self.owner_run}" if self.owner_run else f"pid {self.pid} on {self.host}"
        return (
            f"a {self.stage} run of {self.model} (started {self.run_started_at}, {owner}) "
            f"that did not finish writing {', '.join(entry.name for entry in self.tables)}"
        )

    def dead_for(self, job_run: str | None, now: dt.datetime) -> bool:
        """Whether a run of `job_run` may take this unit as dead on a catalog world: the same job run
        wrote it (an earlier attempt or task of this run, which ended before this task began), or
        its lease has run out."""
        if job_run is not None and self.owner_run == job_run:
            return True
        return self.lease_until is None or dt.datetime.fromisoformat(self.lease_until) <= now


class Journal(Protocol):
    """Keeps the records of the open write units of one use case and country."""

    shared: bool  # seen by every job of the target at once (a catalog world): owners and leases count

    def save(self, unit: WriteUnit) -> None: ...

    def finish(self, unit: WriteUnit) -> None: ...

    def units(self) -> list[WriteUnit]: ...

    def where(self, unit: WriteUnit) -> str: ...

    def how_to_drop(self, unit: WriteUnit) -> str:
        """How a person drops the unit's record once they have looked (an error's fix says it)."""
        ...


class FolderJournal:
    """One JSON file per open unit in a folder of the local storage root, replaced atomically."""

    shared = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, unit: WriteUnit) -> Path:
        return self.folder / f"{unit.unit_id}.json"

    def save(self, unit: WriteUnit) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self._path(unit), json.dumps(unit.record(), indent=1))

    def finish(self, unit: WriteUnit) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(unit).unlink()
        _sync_folder(self.folder)

    def units(self) -> list[WriteUnit]:
        if not self.folder.is_dir():
            return []
        for stale in self.folder.glob(".*.tmp"):  # a record a kill interrupted before its rename: never took effect
            stale.unlink(missing_ok=True)
        units = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                units.append(WriteUnit.from_record({"unit_id": path.stem, **record}, self))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON, text or shape
                raise _unreadable(exc, where=str(path), drop=f"delete {path}") from None
        return units

    def where(self, unit: WriteUnit) -> str:
        return str(self._path(unit))

    def how_to_drop(self, unit: WriteUnit) -> str:
        return f"delete {self._path(unit)}"


# the journal table's columns: one row per record of a unit, appended, never updated
JOURNAL_SCHEMA = (
    "unit_id string, use_case string, country string, seq int, state string, record string, written_at timestamp"
)


class TableJournal:
    """An append-only table in the catalog world's own catalog and schema (use_case.journal_table).

    Appends only, never an update: appends of different jobs do not conflict (Delta's blind
    appends), and a record is one small commit. A unit's state is its record with the highest
    `seq`; `state = 'finished'` ends it. Every record renews the unit's lease (journal.lease_minutes).
    """

    shared = True

    def __init__(self, spark: SparkSession, name: TableName, use_case: str, country: str, lease: dt.timedelta) -> None:
        self.spark, self.name, self.use_case, self.country, self.lease = spark, name, use_case, country, lease
        self._seq: dict[str, int] = {}
        self._ready = False

    def _append(self, unit: WriteUnit, state: str) -> None:
        if not self._ready:
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {self.name.quoted} ({JOURNAL_SCHEMA})")
            self._ready = True
        seq = self._seq.get(unit.unit_id, 0) + 1
        self._seq[unit.unit_id] = seq
        now = dt.datetime.now(dt.UTC)
        if state == "open":
            unit.lease_until = (now + self.lease).isoformat()
        row = (
            unit.unit_id,
            self.use_case,
            self.country,
            seq,
            state,
            json.dumps(unit.record()),
            now.replace(tzinfo=None),
        )
        self.spark.createDataFrame([row], JOURNAL_SCHEMA).write.insertInto(str(self.name))

    def save(self, unit: WriteUnit) -> None:
        self._append(unit, "open")

    def finish(self, unit: WriteUnit) -> None:
        self._append(unit, "finished")

    def units(self) -> list[WriteUnit]:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        if not self.spark.catalog.tableExists(str(self.name)):
            return []
        latest_first = Window.partitionBy("unit_id").orderBy(F.col("seq").desc())
        rows = (
            self.spark.table(str(self.name))
            .where((F.col("use_case") == self.use_case) & (F.col("country") == self.country))
            .withColumn("rank", F.row_number().over(latest_first))
            .where((F.col("rank") == 1) & (F.col("state") == "open"))
            .select("unit_id", "seq", "record")
            .orderBy("unit_id")
            .collect()  # the open units of one country: a few at most
        )
        units = []
        for row in rows:
            unit_id = row["unit_id"]
            self._seq[unit_id] = max(self._seq.get(unit_id, 0), int(row["seq"]))
            try:
                units.append(WriteUnit.from_record(json.loads(row["record"]), self))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON or shape
                where, drop = f"{self.name} (unit {unit_id})", f"run {self.finish_statement(unit_id)}"
                raise _unreadable(exc, where=where, drop=drop) from None
        return units

    def where(self, unit: WriteUnit) -> str:
        return f"{self.name} (unit {unit.unit_id})"

    def how_to_drop(self, unit: WriteUnit) -> str:
        return f"run {self.finish_statement(unit.unit_id)}"

    def finish_statement(self, unit_id: str) -> str:
        """The SQL that ends a unit by hand: its latest row again, as `finished` (the table is append-only)."""
        literal = unit_id.replace("\\", "\\\\").replace("'", "\\'")
        return (
            f"INSERT INTO {self.name.quoted} SELECT unit_id, use_case, country, seq + 1, 'finished', record, "
            f"current_timestamp() FROM {self.name.quoted} WHERE unit_id = '{literal}' ORDER BY seq DESC LIMIT 1"
        )


def journal_for(cfg: DictConfig, spark: SparkSession | None = None) -> Journal:
    """The world's journal: a folder of its storage root locally, a table of its catalog and schema elsewhere."""
    folder = journal_folder(cfg)
    if folder is not None:
        return FolderJournal(folder)
    if spark is None:
        raise ValueError("a catalog world's journal is a table: it needs the Spark session")
    return TableJournal(
        spark,
        TableName.of(cfg.env.catalog, cfg.env.schema, cfg.use_case.journal_table),
        str(cfg.use_case.name),
        str(cfg.country.suffix),
        dt.timedelta(minutes=float(cfg.journal.lease_minutes)),
    )


def begin_unit(
    journal: Journal,
    cfg: DictConfig,
    names: dict[str, TableName],
    before: dict[str, int | None],
    run_started_at: dt.datetime,
    stage: str,
) -> WriteUnit | None:
    """Record a unit before its first write, so that a kill between its writes is found later.

    None when there is nothing to record: one table is one atomic commit.
    """
    if len(names) < 2:
        return None
    mine = {str(name) for name in names.values()}
    unfinished = [unit for unit in journal.units() if mine & {entry.name for entry in unit.tables}]
    if unfinished:  # this unit's `before` would be a half-written state: undo the older one first
        raise UnfinishedWriteError(
            f"found {unfinished[0].describe()}, not yet undone",
            where=unfinished[0].where,
            fix="run any stage through its script or mlops.cli.run_stages: it undoes the unfinished write first",
        )
    keys = list(names)
    now = dt.datetime.now(dt.UTC)
    unit = WriteUnit(
        unit_id=f"{now:%Y%m%dT%H%M%S%f}_{stage}_{uuid.uuid4().hex[:8]}",
        stage=stage,
        model=str(cfg.model.name),
        run_started_at=run_started_at.isoformat(),
        pid=os.getpid(),
        host=socket.gethostname(),
        tables=[JournalTable(key, str(names[key]), before[key]) for key in keys],
        created_at=now.isoformat(),
        owner_run=job_run_of(cfg),
        journal=journal,
    )
    unit.save()
    return unit


def unit_commits(unit: WriteUnit | None) -> contextlib.AbstractContextManager[None]:
    """The unit's writes (WriteUnit.commits), or plain commits when there is no unit (one table)."""
    return contextlib.nullcontext() if unit is None else unit.commits("write")


def open_units(cfg: DictConfig, spark: SparkSession | None = None) -> list[WriteUnit]:
    """The units of this use case and country whose record is still open."""
    return journal_for(cfg, spark).units()


def job_run_of(cfg: DictConfig) -> str | None:
    """The Databricks job run this process is a task of (the bundle passes `{{job.run_id}}`); None by hand."""
    value = OmegaConf.select(cfg, "lineage.job_run_id")
    return None if value is None else str(value)


def recover_unfinished_writes(ctx: RunContext, stages: Any = ()) -> list[WriteUnit]:
    """Undo the multi-table writes of this use case and country that a killed run left half done.

    Called before a run's stages (`cli.run_stages`). A unit is undone, not completed: the versions
    before it are the last set its stage wrote whole. Locally every open unit is a dead process's
    (the run lock is held). On a catalog world only the units on tables that `stages` read or
    write are looked at, and of those only the surely dead are undone (WriteUnit.dead_for); a live
    one stops the run (ConcurrentRunError) and stays as it is.
    """
    journal = ctx.journal
    units = journal.units()
    if journal.shared:
        touched = {str(ctx.table_name(key)) for key in _tables_of(ctx, stages)}
        units = [unit for unit in units if touched & {entry.name for entry in unit.tables}]
        now, job_run = dt.datetime.now(dt.UTC), job_run_of(ctx.cfg)
        live = [unit for unit in units if not unit.dead_for(job_run, now)]
        if live:
            raise ConcurrentRunError(
                f"found {live[0].describe()}, which may still be writing (its lease runs until {live[0].lease_until})",
                where=live[0].where,
                fix="start this run again once that one has ended; a killed run's write is undone by the next "
                "task of its own job run, or by any run after its lease (journal.lease_minutes)",
            )
    for unit in units:
        restored = unit.roll_back(ctx.tables)
        log.warning(
            "found %s (killed?): %s, so its tables are consistent again; the record %s is cleared",
            unit.describe(),
            "restored " + "; ".join(restored) if restored else "none of its writes had landed",
            unit.unit_id,
        )
    return units


def _tables_of(ctx: RunContext, stages: Any) -> set[str]:
    """The use_case.tables keys that the stages read or write (their graph entries)."""
    from mlops.graph import Graph

    graph = Graph.from_config(ctx.cfg)
    keys = {table for stage in stages for table in (*graph.stages[stage].reads, *graph.stages[stage].writes)}
    return {key for key in keys if key in ctx.cfg.use_case.tables}


def _at(version: int | None) -> str:
    return "does not exist" if version is None else f"is at version {version}"


def _unreadable(exc: Exception, *, where: str, drop: str) -> UnfinishedWriteError:
    """A record that cannot be read: which tables its unit wrote, and which versions, is unknown, so
    no table of this use case and country may be restored until a person has looked."""
    return UnfinishedWriteError(
        f"a write journal record cannot be read ({exc}): which tables its unit wrote, and which versions, "
        "is unknown, so nothing was restored",
        where=where,
        fix="the record is cut off or was edited by hand: look at the history of the tables it names (as far "
        "as it can be read) and put back by hand any that its run left half written (Delta RESTORE); "
        f"then {drop}",
    )


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old record or the new one: a temp file beside it, synced, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # the rename (or unlink) is durable only once the folder's entry is on disk
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
