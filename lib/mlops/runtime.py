"""Where a stage runs: the Spark session factory and the RunContext that stages receive."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf

from mlops.config import validate_config
from mlops.errors import ConfigError, MissingInputError, PipelineError
from mlops.frames import first_row
from mlops.spark_jobs import counted
from mlops.tables import TableName, TableStore, make_table_store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mlops.feature_store import FeatureStore, FeatureTableSpec
    from mlops.journal import Journal
    from mlops.population import Population

log = logging.getLogger(__name__)

# the measure RunContext.check adds to every contract's pass: the frame's row count
_ROWS = "__rows__"


def get_spark(spark_cfg: DictConfig) -> SparkSession:
    """The env's Spark world (env/spark: one YAML file per class in mlops.worlds); one session per
    process, since getOrCreate returns the running one on a second call."""
    from mlops.config import build

    return build(spark_cfg).session()


def stage_command(cfg: DictConfig, stage: str) -> str:
    """The command that runs a stage for this model and country, for messages that say what to run."""
    env = "" if cfg.env.name == "local" else f" env={cfg.env.name}"
    return f"python scripts/{stage}.py model={cfg.model.name} country={cfg.country.code}{env}"


@dataclass
class StageResult:
    """What a stage did, for logs, tests and the next stage's lineage."""

    stage: str
    tables: dict[str, int | None] = field(default_factory=dict)  # table key -> Delta version written
    rows: dict[str, int] = field(default_factory=dict)  # table key -> row count written
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # what a person should know about this run (e.g. features dropped), listed in the closing summary
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # run because a later stage needed its output (RunContext.make), not because it was asked for
    upstream: bool = False
    # the stage's data-quality report: {"docs": index.html, "results": folder, "run_id": MLflow run}
    data_quality: dict[str, str] = field(default_factory=dict)
    # Spark jobs the stage itself started (not its producers'); None on Spark Connect (mlops.spark_jobs)
    spark_jobs: int | None = None
    # the queries (actions) among them: one round trip each on serverless (mlops.spark_jobs)
    spark_queries: int | None = None

    @classmethod
    def of_writes(cls, stage: str, written: dict[str, tuple[int | None, int]], **extra: Any) -> StageResult:
        """A result from RunContext.write_all's (version, rows) per table."""
        return cls(
            stage=stage,
            tables={key: version for key, (version, _) in written.items()},
            rows={key: rows for key, (_, rows) in written.items()},
            **extra,
        )


@dataclass
class RunContext:
    """Everything a stage may touch: config, Spark, tables, feature tables. Stages get nothing else."""

    cfg: DictConfig
    spark: SparkSession
    tables: TableStore
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # every stage this context ran, in order, including producers of missing inputs (make)
    results: list[StageResult] = field(default_factory=list)
    # Great Expectations validation results of the current stage (mlops.quality.validate appends)
    validations: list[Any] = field(default_factory=list)
    # the frames whose contract held in the current stage, with that contract and their row count
    # from its pass: not checked (or counted) twice
    _checked: list[tuple[DataFrame, list[dict], int | None]] = field(default_factory=list)
    # seconds spent in stages run from within the current one (RunContext.run)
    _nested_seconds: float = 0.0
    # the env's world for feature tables (env/feature_store); built from cfg when not given
    feature_store: FeatureStore = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.feature_store is None:
            from mlops.feature_store import make_feature_store

            self.feature_store = make_feature_store(self.cfg.env, self.spark, self.tables)

    @classmethod
    def from_config(cls, cfg: DictConfig, spark: SparkSession | None = None) -> RunContext:
        from mlops.feature_store import make_feature_store

        validate_config(cfg)
        spark = spark or get_spark(cfg.env.spark)
        tables = make_table_store(cfg.env, spark)
        return cls(cfg=cfg, spark=spark, tables=tables, feature_store=make_feature_store(cfg.env, spark, tables))

    @functools.cached_property
    def population(self) -> Population:
        """Who the models learn from, are judged on and serve (use_case.population)."""
        from mlops.population import population_of

        return population_of(self.cfg)

    @functools.cached_property
    def journal(self) -> Journal:
        """Where multi-table writes are recorded until they are whole (mlops.journal)."""
        from mlops.journal import journal_for

        return journal_for(self.cfg, self.spark)

    @property
    def persist(self) -> bool:
        """Whether this env's Spark may cache DataFrames (serverless compute may not)."""
        return bool(self.cfg.env.spark.get("persist", True))

    def cache(self, df: DataFrame) -> DataFrame:
        """Keep a frame that several actions read (a count, then the contract and the write), so
        it is computed once; where the env forbids caching it is computed per action instead."""
        return df.persist() if self.persist else df

    def table_name(self, key: str) -> TableName:
        try:
            table = self.cfg.use_case.tables[key]
        except Exception:
            raise ConfigError(
                f"no table named {key!r} in config", where="use_case.tables", fix=f"add use_case.tables.{key}"
            ) from None
        return TableName.of(self.cfg.env.catalog, self.cfg.env.schema, table)

    def read(self, key: str) -> DataFrame:
        """Read an input table; locally, first run the stage that makes it if it is missing."""
        name = self.table_name(key)
        if not self.tables.exists(name):
            self.make(key, f"input table {name} does not exist", where=f"table key {key!r}")
        return self.tables.read(name)

    def make(self, output: str, why: str, *, where: str) -> StageResult:
        """Run the stage of the pipeline graph that makes a missing output, in this context (local
        envs only: elsewhere a missing input means the upstream job has not run, and says so)."""
        from mlops.graph import Graph

        graph = Graph.from_config(self.cfg)
        stage = graph.producer(output)
        if not self.cfg.env.run_missing_upstream or stage is None:
            raise MissingInputError(
                f"{why}{'' if stage else ' and no stage makes it'}",
                where=where,
                fix=f"run the {stage} stage first" if stage else "create it, or fix use_case.tables / pipeline.graph",
            )
        log.info("%s: running stage %r first", why, stage)
        return self.run(stage, upstream=True)

    def run(self, stage: str, *, upstream: bool = False) -> StageResult:
        """Run one stage of the graph: timed, its data-quality report published (also when its
        contract fails), and recorded in `results` for the closing summary."""
        from mlops.graph import Graph
        from mlops.summary import publish_quality

        function = Graph.from_config(self.cfg).function(stage)
        outer, self.validations = self.validations, []  # an upstream stage's checks are its own
        outer_checked, self._checked = self._checked, []
        outer_nested, self._nested_seconds = self._nested_seconds, 0.0
        started = time.perf_counter()
        try:
            with counted(self.spark, stage) as jobs:
                result = function(self)
        except BaseException as error:
            report = publish_quality(self, stage, self.validations, None)
            if report and isinstance(error, PipelineError):
                error.report = report["docs"]
            raise
        finally:
            validations, self.validations = self.validations, outer
            self._checked = outer_checked
            elapsed, nested = time.perf_counter() - started, self._nested_seconds
            self._nested_seconds = outer_nested + elapsed
        # its own time: the producers it ran first are timed on their own results
        result.seconds, result.upstream = elapsed - nested, upstream
        result.spark_jobs, result.spark_queries = jobs.jobs, jobs.queries
        result.data_quality = publish_quality(self, stage, validations, result)
        self.results.append(result)
        return result

    def write(self, key: str, df: DataFrame) -> tuple[int | None, int]:
        """Validate, then overwrite atomically; returns (new version, rows in the table)."""
        return self.write_all({key: df})[key]

    def write_all(
        self,
        outputs: dict[str, DataFrame],
        *,
        replace_dates: tuple[str, list] | None = None,
        extra_expectations: dict[str, list[dict]] | None = None,
        feature_tables: dict[str, FeatureTableSpec] | None = None,
    ) -> dict[str, tuple[int | None, int]]:
        """Write a stage's outputs as one unit: every contract is checked before the first write,
        and if a later write fails the earlier ones are rolled back to their previous versions.

        With `replace_dates=(column, dates)` only those dates' rows are replaced (history kept).
        `extra_expectations` adds checks only known at run time (e.g. an exact row count).
        `feature_tables` names the outputs that are feature tables: after the checks they are made
        feature tables with those keys (idempotent), and loaded by the feature store's
        truncate-and-load, which keeps them feature tables (on Databricks a plain overwrite would not).
        """
        names = {key: self.table_name(key) for key in outputs}
        feature_tables = feature_tables or {}
        for key, spec in feature_tables.items():
            if key not in outputs or spec.name != names[key] or replace_dates:
                raise ConfigError(
                    f"feature table {key!r} must be an output, named {names.get(key)}, and loaded whole",
                    where="RunContext.write_all(feature_tables=...)",
                    fix="build the spec from ctx.table_name(key) and do not combine it with replace_dates",
                )
        rows: dict[str, int | None] = {}
        for key, df in outputs.items():
            entries = self.suite(key) + (extra_expectations or {}).get(key, [])
            known = [counted for checked, held, counted in self._checked if checked is df and held == entries]
            if not known:
                self.check(df, entries, table=str(names[key]))
                known = [self._checked[-1][2]]
            rows[key] = known[0]
        self._check_shrink(names, outputs, replace_dates, rows)
        for key, spec in feature_tables.items():
            self.feature_store.ensure_table(spec, outputs[key].schema)
        before = {key: self.tables.version(name) for key, name in names.items()}
        from mlops.graph import Graph
        from mlops.journal import begin_unit, unit_commits

        # an exception is rolled back below; a kill is not, so the journal lets the next run do it
        stage = Graph.from_config(self.cfg).producer(next(iter(names))) or "unknown"
        unit = begin_unit(self.journal, self.cfg, names, before, self.started_at, stage)
        written: dict[str, tuple[int | None, int]] = {}
        try:
            for key, df in outputs.items():
                with unit_commits(unit):  # each commit names its unit, for a recovery after a kill
                    if replace_dates:
                        version = self.tables.replace_dates(names[key], df, *replace_dates)
                    elif key in feature_tables:
                        version = self.feature_store.truncate_and_load(names[key], df)
                    else:
                        version = self.tables.overwrite(names[key], df)
                if unit is not None:
                    unit.wrote(key, version)
                written[key] = (version, self.tables.rows(names[key]))
                log.info("wrote %s: version %s, %d rows", names[key], *written[key])
        except BaseException:
            if unit is not None:  # also undoes a write that committed just before the exception
                for restored in unit.roll_back(self.tables):
                    log.warning("rolled %s", restored)
            else:
                for key in written:
                    log.warning("rolling %s back to version %s", names[key], before[key])
                    self.tables.restore(names[key], before[key])
            raise
        finally:
            for df in outputs.values() if self.persist else ():
                df.unpersist()  # validation caches what it checks; the write has used it
        if unit is not None:
            unit.finish()
        return written

    def check(
        self, df: DataFrame, entries: list[dict], *, table: str, measures: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate a frame against a contract, keeping the result for the stage's data-quality
        report; returns `measures` (name -> aggregate), computed in the contract's own pass.
        A frame whose contract held is not checked again when it is written."""
        from pyspark.sql import functions as F

        from mlops.quality import validate

        # the row count rides along where the contract is checked anyway (the shrink guard's)
        counting = {**(measures or {}), **({_ROWS: F.count(F.lit(1))} if entries else {})}
        measured = validate(
            df,
            entries,
            table=table,
            persist=self.persist,
            results=self.validations,
            measures=counting,
            private=self.entity_columns,
        )
        self._checked.append((df, entries, measured.pop(_ROWS, None)))
        return measured

    @property
    def entity_columns(self) -> tuple[str, ...]:
        """The columns that hold customer ids, in the clean tables and as the source names them:
        their values never appear in a message or report (mlops.quality.validate's `private`)."""
        entity = str(self.cfg.use_case.key_columns[0])
        source = OmegaConf.select(self.cfg, f"use_case.source.columns.{entity}")
        return tuple(column for column in (entity, source) if column)

    def _check_shrink(
        self,
        names: dict[str, TableName],
        outputs: dict[str, DataFrame],
        replace_dates: tuple[str, list] | None,
        rows: dict[str, int | None],
    ) -> None:
        """A new version may not hold far fewer rows than the current one (for a per-date replace:
        than the current rows of those dates). Every contract can hold on a collapsed input, e.g. a
        source of returns only; this keeps the last good version current unless the user says so."""
        from pyspark.sql import functions as F

        from mlops.errors import DataQualityError

        guards = self.cfg.use_case.get("guards") or {}
        limit = guards.get("max_shrink_share")
        if limit is None:
            return
        for key, df in outputs.items():
            if not self.tables.exists(names[key]):
                continue
            if replace_dates:
                current = self.tables.read(names[key])
                old = current.where(F.col(replace_dates[0]).isin(list(replace_dates[1]))).count()
            else:
                old = self.tables.rows(names[key])
            counted = rows.get(key)
            new = (df.count() if counted is None else counted) if old else 0
            if not old or new >= (1 - float(limit)) * old:
                continue
            change = f"{new} rows would replace the {old} of the current version ({1 - new / old:.0%} fewer)"
            if guards.get("allow_shrink"):
                log.warning("%s: %s; allowed by use_case.guards.allow_shrink=true", names[key], change)
                continue
            raise DataQualityError(
                f"{change}, more than use_case.guards.max_shrink_share={float(limit):g} allows",
                where=str(names[key]),
                fix="check the input (a partial or filtered source?); if the smaller table is "
                "right, run once with use_case.guards.allow_shrink=true; nothing was written",
            )

    def suite(self, key: str) -> list[dict]:
        """The table's contract: the use case's expectations plus the model's own for that table,
        less those about a column the config maps to null (a source without invoices, say)."""
        from mlops.quality import applicable

        entries: list[dict] = []
        for owner in (self.cfg.use_case, self.cfg.model):
            suite = (owner.get("quality") or {}).get(key)
            if suite:
                entries += cast(list, OmegaConf.to_container(suite, resolve=True))
        return applicable(entries)

    def day_bounds(self, transactions: DataFrame, measures: dict[str, Any] | None = None) -> dict[str, Any]:
        """The first and last day of the transactions ("first", "last"), with a stage's own
        `measures` (name -> aggregate) from the same pass; an empty table is an error."""
        from pyspark.sql import functions as F

        from mlops.errors import DataQualityError

        day = F.to_date(F.col(self.cfg.use_case.timestamp_column))
        bounds = first_row(
            transactions.agg(
                F.min(day).alias("first"),
                F.max(day).alias("last"),
                *(value.alias(name) for name, value in (measures or {}).items()),
            )
        ).asDict()
        if bounds["last"] is None:
            raise DataQualityError(
                "the transactions table is empty",
                where=str(self.table_name("transactions")),
                fix="re-run extract on a source that has rows for this country",
            )
        return bounds

    def observed_days(
        self, transactions: DataFrame, bounds: dict[str, Any] | None = None
    ) -> tuple[dt.date, dt.date, dt.date]:
        """(first day, last day, last fully observed day) of the transactions; `bounds` when the
        stage has them from day_bounds already.

        The latest day is usually cut off mid-day, so unless use_case.snapshots.observed_until
        says otherwise the last fully observed day is the one before it. Features, scoring and
        monitoring all take it from here, so a horizon "has passed" means the same everywhere.
        """
        from mlops.config import parse_date

        bounds = bounds or self.day_bounds(transactions)
        configured = self.cfg.use_case.snapshots.observed_until
        observed_until = (
            parse_date(configured, "use_case.snapshots.observed_until")
            if configured
            else bounds["last"] - dt.timedelta(days=1)
        )
        return bounds["first"], bounds["last"], observed_until

    def input_versions(self, *keys: str) -> dict[str, int | None]:
        return {key: self.tables.version(self.table_name(key)) for key in keys}
