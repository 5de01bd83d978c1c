"""Re-running the data stages on the same inputs changes nothing but the table versions.

Jobs retry failed tasks and operators re-run stages by hand, so extract -> features -> split must
be safe to run again: each run writes new Delta versions whose contents equal the previous ones.
(Re-running evaluate is covered in test_deployment_gate.py, re-scoring a date in
test_inference_monitoring.py.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from integration_tests.conftest import local_config
from mlops.cli import run_stages
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration

STAGES = ["extract", "features", "split"]
TABLES = ("transactions", "features", "labels", "train", "test")


@dataclass(frozen=True)
class TableState:
    version: int
    rows: int
    schema: str
    digest: str  # of every column of every row, independent of row order


def content_digest(df: DataFrame) -> tuple[int, str]:
    """(rows, one hash over all rows and columns), order-free: tables with equal rows have equal digests."""
    row_hash = F.sha2(F.to_json(F.struct(*[F.col(name) for name in df.columns])), 256)
    hashes = sorted(row["row_hash"] for row in df.select(row_hash.alias("row_hash")).collect())
    return len(hashes), hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def table_states(ctx: RunContext) -> dict[str, TableState]:
    states = {}
    for key in TABLES:
        df = ctx.read(key)
        rows, digest = content_digest(df)
        states[key] = TableState(ctx.tables.version(ctx.table_name(key)), rows, df.schema.simpleString(), digest)
    return states


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, spark):
    """The data stages run twice on one root, each time in a fresh context, as a job retry would."""
    root = tmp_path_factory.mktemp("idempotency")
    cfg = local_config(root, "country=DE")
    states = []
    for _ in range(2):
        ctx = RunContext.from_config(cfg, spark=spark)
        run_stages(STAGES, cfg, ctx)
        states.append(table_states(ctx))
    return ctx, states[0], states[1]


def test_a_rerun_writes_a_new_version_of_every_table(two_runs):
    ctx, first, second = two_runs
    for key in TABLES:
        assert second[key].version == first[key].version + 1, key
        history = DeltaTable(str(ctx.tables.path(ctx.table_name(key)))).history()
        assert history[0]["version"] == second[key].version and history[0]["operation"] == "WRITE", key


def test_a_rerun_leaves_every_table_with_the_same_contents(two_runs):
    _, first, second = two_runs
    for key in TABLES:
        assert first[key].rows > 0, key
        assert (second[key].rows, second[key].schema) == (first[key].rows, first[key].schema), key
        assert second[key].digest == first[key].digest, f"{key}: same inputs, different rows"


def test_the_digest_sees_a_change_in_any_column(two_runs, spark):
    """The digest is what the idempotency check stands on: one changed value must change it."""
    ctx, _, second = two_runs
    train = ctx.read("train")
    first_row = train.orderBy(*ctx.cfg.use_case.key_columns).limit(1)
    nudged = first_row.select(
        *[
            (F.col(name) + 1).alias(name) if name == ctx.cfg.model.label.column else F.col(name)
            for name in train.columns
        ]
    )
    changed = train.exceptAll(first_row).unionByName(nudged)
    rows, digest = content_digest(changed)
    assert rows == second["train"].rows and digest != second["train"].digest
    assert content_digest(train.orderBy(F.rand(seed=7))) == (second["train"].rows, second["train"].digest)
