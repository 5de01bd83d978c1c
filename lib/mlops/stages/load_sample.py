"""Stage load_sample: the packaged sample -> the env's source table, so a target can own its test data.

The nightly chain on the `test` target reads raw transactions from a Unity Catalog table like every
Databricks target (use_case/source=table); this stage fills that table from the sample shipped
in the wheel before the chain runs. It writes only where the env allows the sample
(`env.allow_bundled_sample`): on staging and prod the same table name would be the real source.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.config import bundled_sample_allowed
from mlops.errors import ConfigError
from mlops.frames import first_row
from mlops.quality import validate
from mlops.runtime import RunContext, StageResult
from mlops.sources import BundledSource, TableSource, make_source

log = logging.getLogger(__name__)


def _fingerprint(df: DataFrame) -> tuple:
    # row count and the sum of 64-bit row hashes: order-free, counts duplicates, one aggregation
    row = first_row(
        df.agg(
            F.count("*").alias("rows"),
            F.sum(F.xxhash64(*(F.col(f"`{c}`") for c in df.columns)).cast("decimal(38,0)")).alias("hash"),
        )
    )
    return row["rows"], row["hash"]


def load_sample(ctx: RunContext) -> StageResult:
    cfg = ctx.cfg
    source = make_source(cfg.use_case.source)
    if not isinstance(source, TableSource):
        raise ConfigError(
            f"load_sample fills the table extract reads, but use_case/source={source.kind} ({source.describe()})",
            where="config group use_case/source",
            fix="use_case/source=table use_case.source.table=<catalog.schema.table>",
        )
    name = source.name()
    if not bundled_sample_allowed(cfg):
        raise ConfigError(
            f"env {cfg.env.name} serves real customers: loading the packaged sample would replace "
            f"its source table {name}",
            where="env.allow_bundled_sample",
            fix="load the sample only on the test target (or a dev / local env)",
        )
    sample_source = BundledSource(cfg.use_case.sample.package, cfg.use_case.sample.file)
    sample = sample_source.read(ctx.spark)  # ~31k lines from the wheel: cheap to recompute
    fingerprint = _fingerprint(sample)
    rows = fingerprint[0]
    existing = ctx.tables.read(name) if ctx.tables.exists(name) else None
    # the same columns, types and multiset of rows: a load would change nothing
    if existing is not None and existing.dtypes == sample.dtypes and _fingerprint(existing) == fingerprint:
        version = ctx.tables.version(name)
        log.info("%s already holds the sample (%d rows, version %s): nothing written", name, rows, version)
        return StageResult(
            stage="load_sample",
            tables={"source": version},
            rows={"source": rows},
            details={"table": str(name), "written": False},
        )
    # the contract extract will check, checked before the write, so a failure leaves the table as it was
    validate(
        sample,
        ctx.suite("source"),
        table=sample_source.describe(),
        persist=False,
        results=ctx.validations,
    )
    version = ctx.tables.overwrite(name, sample)
    log.info("loaded %s into %s: version %s, %d rows", sample_source.describe(), name, version, rows)
    return StageResult(
        stage="load_sample",
        tables={"source": version},
        rows={"source": rows},
        details={"table": str(name), "written": True},
    )
