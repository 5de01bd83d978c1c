"""Faults: a stage killed in the middle of a table overwrite, two runs of the same stage at once,
and a re-run after each. The last good state must stay readable and nothing may interleave."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from integration_tests.conftest import local_config
from mlops.cli import run_stages
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]

# Runs a stage script with the Delta write slowed down: the rows go to deltalake in small batches,
# half a second apart, and a marker file appears once the write has started. Killing the process
# then lands in the middle of an overwrite, before its commit, every time.
SLOW_WRITER = """
import pathlib, runpy, sys, time
import pyarrow as pa
from mlops import tables

marker = pathlib.Path(sys.argv.pop(1))
original = tables.DeltaPathTableStore.overwrite_arrow

def slow_overwrite(self, name, data):
    table = data if isinstance(data, pa.Table) else data.read_all()
    def batches():
        for number, batch in enumerate(table.to_batches(max_chunksize=max(1, table.num_rows // 40))):
            yield batch
            if number == 1:
                marker.write_text("writing")
            time.sleep(0.5)
    return original(self, name, pa.RecordBatchReader.from_batches(table.schema, batches()))

tables.DeltaPathTableStore.overwrite_arrow = slow_overwrite
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def small_source(tmp_path_factory) -> list[str]:
    """Overrides for a small German source: the faults are about writes, not about data volume."""
    from integration_tests.test_bad_input import _base

    path = tmp_path_factory.mktemp("source") / "germany.csv.gz"
    _base().to_csv(path, index=False, compression="gzip")
    return ["country=DE", "use_case.source.kind=csv", f"use_case.source.path={path}"]


def script(name: str, *overrides: str, cwd: Path) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / name), *overrides]


@pytest.fixture
def extracted(tmp_path, spark, small_source):
    """A root whose transactions table has one good version (0), and the overrides that made it."""
    root = tmp_path / "root"
    overrides = [f"env.storage_root={root}", *small_source]
    cfg = local_config(root, *small_source)
    ctx = RunContext.from_config(cfg, spark=spark)
    run_stages(["extract"], cfg, ctx)
    path = ctx.tables.path(ctx.table_name("transactions"))
    return root, path, ctx.read("transactions").count(), overrides


def test_kill_9_in_the_middle_of_an_overwrite_leaves_the_previous_version(extracted, tmp_path, spark):
    root, path, rows, overrides = extracted
    marker = tmp_path / "writing"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(marker), str(REPO / "scripts" / "extract.py"), *overrides],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, f"the stage ended before its write:\n{process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    table = DeltaTable(str(path))
    assert table.version() == 0, "a killed write must not commit"
    assert spark.read.parquet(*table.file_uris()).count() == rows

    # the re-run (in this process: the point is the table, not the process)
    cfg = local_config(root, *overrides[1:])
    run_stages(["extract"], cfg, RunContext.from_config(cfg, spark=spark))
    table = DeltaTable(str(path))
    assert table.version() == 1
    assert spark.read.parquet(*table.file_uris()).count() == rows


def test_two_runs_of_the_same_stages_take_turns_and_never_interleave(extracted, tmp_path):
    root, _, _, overrides = extracted
    # features: two tables per run (features, labels), so interleaving could show; it reads the fixture's transactions
    command = script("run_pipeline.py", *overrides, "pipeline.stages=[features]", cwd=tmp_path)
    first = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    second = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    errors = [process.communicate(timeout=900)[1] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], "\n".join(e[-2000:] for e in errors)
    assert sum("is writing; waiting for" in e for e in errors) == 1

    warehouse = root / "warehouse" / "local" / "clv"
    stamp = {}
    for table in ("clv_repurchase_features_de", "clv_repurchase_labels_de"):
        for entry in DeltaTable(str(warehouse / table)).history():
            stamp[table, entry["version"]] = entry["timestamp"]
    # each run writes one version of both tables, the first run's both before the second run's
    first_run = [stamp["clv_repurchase_features_de", 0], stamp["clv_repurchase_labels_de", 0]]
    second_run = [stamp["clv_repurchase_features_de", 1], stamp["clv_repurchase_labels_de", 1]]
    assert max(first_run) <= min(second_run), "the two runs' writes interleaved"
    assert len(stamp) == 2 + 2


def test_a_run_that_cannot_get_the_lock_in_time_exits_8_without_starting(extracted, tmp_path):
    root, path, _, overrides = extracted
    lock = root / "locks" / "clv_de.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another run is writing
        result = subprocess.run(script("extract.py", *overrides, "env.lock_timeout_seconds=1",
                                       cwd=tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 8, result.stderr[-3000:]
    assert "another run of clv DE has held the lock" in result.stderr and "env.lock_timeout_seconds" in result.stderr
    assert DeltaTable(str(path)).version() == 0
