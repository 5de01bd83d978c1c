"""The write journal: a multi-table write that a kill cut in half is found, and undone, by the next run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from mlops.errors import PipelineError
from mlops.tables import TableName, TableStore

if TYPE_CHECKING:
    from mlops.runtime import RunContext

log = logging.getLogger(__name__)


class UnfinishedWriteError(PipelineError):
    """A killed run's half-done write cannot be undone safely, because a table has been written since."""

    exit_code = 11


def journal_folder(cfg: DictConfig) -> Path | None:
    """Where this use case and country keep their open write units; None where there is no journal.

    Only worlds whose tables are local files (DeltaPathTableStore) have one. Their storage root is durable, and recovery is safe only
    because of the run lock that guards that root (`cli.run_lock`). On catalog envs the storage
    root is on a job cluster's disk, so it is lost with the cluster, and nothing takes a lock there
    either: a model's training job and its scoring job may run at the same time.
    """
    from mlops.tables import keeps_local_files

    if not keeps_local_files(cfg.env):
        return None
    return Path(cfg.env.storage_root) / "journal" / f"{cfg.use_case.name}_{cfg.country.suffix}"


@dataclass
class JournalTable:
    """One table of a unit: its version before the unit, and the versions the unit itself made."""

    key: str
    name: str
    before: int | None
    written: int | None = None
    restored: int | None = None

    @property
    def table_name(self) -> TableName:
        return TableName(*self.name.split("."))


@dataclass
class InFlight:
    """The commit the unit was making when it last wrote its record: a kill can land between that
    commit and the record saying so. Every TableStore write and restore is one commit, one version."""

    key: str
    op: str  # "write" or "restore"
    start: int | None  # the table's version when the commit began

    @property
    def lands_at(self) -> int:
        return 0 if self.start is None else self.start + 1


@dataclass
class WriteUnit:
    """A stage's outputs written as one unit (RunContext.write_all), as recorded on disk while it runs."""

    path: Path
    stage: str
    model: str
    run_started_at: str
    pid: int
    host: str
    tables: list[JournalTable]
    in_flight: InFlight | None = None
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    # -- the record ----------------------------------------------------------------------------

    def save(self) -> None:
        record = asdict(self)
        record.pop("path")
        _write_atomically(self.path, json.dumps(record, indent=1))

    @classmethod
    def load(cls, path: Path) -> WriteUnit:
        record = json.loads(path.read_text(encoding="utf-8"))
        in_flight = record.pop("in_flight")
        tables = [JournalTable(**entry) for entry in record.pop("tables")]
        return cls(path=path, tables=tables, in_flight=InFlight(**in_flight) if in_flight else None, **record)

    def finish(self) -> None:
        """The unit is over (written whole, or undone): drop its record."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _sync_folder(self.path.parent)

    # -- while writing -------------------------------------------------------------------------

    def wrote(self, key: str, version: int | None) -> None:
        """Record a committed write before the next one starts, and which table is written next."""
        entry = self._entry(key)
        entry.written = version
        following = [table for table in self.tables if table.written is None]
        self.in_flight = InFlight(following[0].key, "write", following[0].before) if following else None
        self.save()

    # -- undoing -------------------------------------------------------------------------------

    def roll_back(self, tables: TableStore) -> list[str]:
        """Put every table the unit wrote back to its version before the unit, then drop the record.

        All or nothing: every table is checked before the first restore. A table whose current
        version is neither its version before the unit nor one the unit (or an earlier, interrupted
        roll-back) committed has been written since by someone else; restoring it would throw that
        write away, so nothing is restored and the record stays for a person to decide.
        Returns what was restored, one phrase per table.
        """
        plan: list[tuple[JournalTable, int | None]] = []
        foreign: list[str] = []
        for entry in self.tables:
            current = tables.version(entry.table_name)
            step = self._undo_step(entry, current)
            if step == "restore":
                plan.append((entry, current))
            elif step == "foreign":
                foreign.append(
                    f"{entry.name} is at version {current}, which this unit did not write "
                    f"(before it: {entry.before}, it wrote: {entry.written})"
                )
        if foreign:
            raise UnfinishedWriteError(
                f"an interrupted {self.stage} write of {self.model} cannot be undone: " + "; ".join(foreign),
                where=str(self.path),
                fix="look at the tables' Delta history; restore them to a consistent set by hand, then delete the "
                "journal record (or delete it to keep the tables as they are)",
            )
        done = []
        for entry, current in plan:
            self.in_flight = InFlight(entry.key, "restore", current)
            self.save()
            tables.restore(entry.table_name, entry.before)
            entry.restored = tables.version(entry.table_name)
            self.in_flight = None
            self.save()
            done.append(
                f"{entry.name} from version {current} back to "
                f"{'not existing' if entry.before is None else f'version {entry.before}'}"
                f"{'' if entry.restored is None else f' (now version {entry.restored})'}"
            )
        self.finish()
        return done

    def _undo_step(self, entry: JournalTable, current: int | None) -> str:
        """ "keep" (nothing of the unit's is in the table), "restore", or "foreign" (written since)."""
        if current == entry.before or (entry.restored is not None and current == entry.restored):
            return "keep"
        flight = self.in_flight
        if flight is not None and flight.key == entry.key and current == flight.lands_at:
            return "restore" if flight.op == "write" else "keep"  # a restore that landed is done
        if entry.written is not None and current == entry.written:
            return "restore"
        return "foreign"

    def _entry(self, key: str) -> JournalTable:
        return next(entry for entry in self.tables if entry.key == key)

    def describe(self) -> str:
        return (
            f"a {self.stage} run of {self.model} (started {self.run_started_at}, pid {self.pid} on {self.host}) "
            f"that did not finish writing {', '.join(entry.name for entry in self.tables)}"
        )


def begin_unit(
    cfg: DictConfig, names: dict[str, TableName], before: dict[str, int | None], run_started_at: dt.datetime
) -> WriteUnit | None:
    """Record a unit before its first write, so that a kill between its writes is found later.

    None when there is nothing to record: one table is one atomic commit, and envs without a
    journal (`journal_folder`) are not covered.
    """
    folder = journal_folder(cfg)
    if folder is None or len(names) < 2:
        return None
    unfinished = open_units(cfg)
    if unfinished:  # this unit's `before` would be a half-written state: undo the older one first
        raise UnfinishedWriteError(
            f"found {unfinished[0].describe()}, not yet undone",
            where=str(unfinished[0].path),
            fix="run any stage through its script or mlops.cli.run_stages: it undoes the "
            "unfinished write first, under the run lock",
        )
    from mlops.graph import Graph

    keys = list(names)
    now = dt.datetime.now(dt.UTC)
    stage = Graph.from_config(cfg).producer(keys[0]) or "unknown"
    unit = WriteUnit(
        path=folder / f"{now:%Y%m%dT%H%M%S%f}_{stage}_{uuid.uuid4().hex[:8]}.json",
        stage=stage,
        model=str(cfg.model.name),
        run_started_at=run_started_at.isoformat(),
        pid=os.getpid(),
        host=socket.gethostname(),
        tables=[JournalTable(key, str(names[key]), before[key]) for key in keys],
        in_flight=InFlight(keys[0], "write", before[keys[0]]),
        created_at=now.isoformat(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    unit.save()
    return unit


def open_units(cfg: DictConfig) -> list[WriteUnit]:
    """The units of this use case and country whose record is still there.

    At most one: begin_unit will not stack a unit on an unfinished one, whose half-written state
    would become the new unit's `before`.
    """
    folder = journal_folder(cfg)
    if folder is None or not folder.is_dir():
        return []
    for stale in folder.glob(".*.tmp"):  # a record a kill interrupted before its rename: never took effect
        stale.unlink(missing_ok=True)
    return [WriteUnit.load(path) for path in sorted(folder.glob("*.json"))]


def recover_unfinished_writes(ctx: RunContext) -> list[WriteUnit]:
    """Undo every multi-table write of this use case and country that a killed run left half done.

    Called at the start of every stage run while the run lock is held (`cli.run_stages`): no other
    run of this use case and country can be writing, so a record still on disk belongs to a
    process that died. A unit is undone, not completed: the versions before it are the last set
    its stage wrote whole.
    """
    units = open_units(ctx.cfg)
    for unit in units:
        restored = unit.roll_back(ctx.tables)
        log.warning(
            "found %s (killed?): %s, so its tables are consistent again; the record %s is cleared",
            unit.describe(),
            "restored " + "; ".join(restored) if restored else "none of its writes had landed",
            unit.path.name,
        )
    return units


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
