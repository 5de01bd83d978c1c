"""Stage load_sample: the packaged sample -> the env's source table, so a target can own its test data.

The nightly chain on the `test` target reads raw transactions from a Unity Catalog table like every
Databricks target (use_case/source=table); this stage fills that table from the sample shipped
in the wheel before the chain runs. It writes only where the env allows the sample
(`env.allow_bundled_sample`): on staging and prod the same table name would be the real source.
Nor does it write a table the pipeline owns (extract's transactions, any feature, label or
prediction table, the journal), in any env: those are guarded by contracts and journals that a
sample load would step past.
"""

from __future__ import annotations

import logging
import re
from typing import cast

from omegaconf import DictConfig, OmegaConf
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops.config import bundled_sample_allowed
from mlops.errors import ConfigError
from mlops.frames import first_row
from mlops.quality import validate
from mlops.runtime import RunContext, StageResult
from mlops.sources import BundledSource, TableSource, make_source
from mlops.tables import TableName

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


def _owned_name_patterns(cfg: DictConfig) -> list[re.Pattern]:
    # Every table name the use case writes, for any model, country and env: the templates of
    # use_case.tables with their interpolations (model, country, ...) as wildcards, the use case's
    # own name kept. Judged by the table's own name, not its catalog: prod.clv.clv_transactions_de
    # pointed at from a dev session is still extract's output.
    templates = cast(dict, OmegaConf.to_container(cfg.use_case, resolve=False))
    names = [*templates["tables"].values(), templates["journal_table"]]
    use_case = str(cfg.use_case.name)
    patterns = []
    for template in names:
        parts = re.split(r"(\$\{[^}]*\})", str(template))
        regex = "".join(
            re.escape(use_case)
            if part == "${use_case.name}"
            else "[A-Za-z0-9_]+"
            if part.startswith("${")
            else re.escape(part)
            for part in parts
        )
        patterns.append(re.compile(regex, re.IGNORECASE))
    return patterns


def _refuse_pipeline_table(cfg: DictConfig, name: TableName) -> None:
    if any(pattern.fullmatch(name.table) for pattern in _owned_name_patterns(cfg)):
        raise ConfigError(
            f"{name} is a table the pipeline itself writes (use_case.tables of use case {cfg.use_case.name}): "
            "the sample would replace it past every contract and guard",
            where="use_case.source.table",
            fix="name the raw source table extract reads (the bundle's var.source_table, e.g. "
            f"{name.catalog}.{name.schema}.{cfg.use_case.name}_source_transactions)",
        )


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
    _refuse_pipeline_table(cfg, name)
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
        private=ctx.entity_columns,
    )
    version = ctx.tables.overwrite(name, sample)
    log.info("loaded %s into %s: version %s, %d rows", sample_source.describe(), name, version, rows)
    return StageResult(
        stage="load_sample",
        tables={"source": version},
        rows={"source": rows},
        details={"table": str(name), "written": True},
    )
