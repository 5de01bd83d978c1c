"""Integration fixtures: the unit-test Spark session and config helpers, shared, and one complete
run of every stage per model on the DE sample that several modules read instead of re-running."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# the xdist hooks too: a conftest's hooks apply only where its folder is collected
from tests.conftest import (  # noqa: F401
    cfg,
    ctx,
    local_config,
    mlflow_state_kept,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_xdist_make_scheduler,
    session_root,
    spark,
)
from tests.timing import timed

# the pipeline every module shares: backfilled monthly scores from July, so monitoring has matured dates
DE_PIPELINE_OVERRIDES = ("country=DE", "inference.backfill.start=2011-07-09")


class DePipelines(dict):
    """model -> {"ctx", "results", "wall_seconds"}: every stage, run on first use, once per session.

    Readers may add to these worlds (re-score a date, run a failing script against them) but must
    leave every table's data and every alias as they found them.
    """

    def __init__(self, root_factory: pytest.TempPathFactory, spark: Any) -> None:
        super().__init__()
        self.root_factory, self.spark = root_factory, spark

    def __missing__(self, model: str) -> dict[str, Any]:
        from mlops.cli import run_stages
        from mlops.runtime import RunContext

        config = local_config(self.root_factory.mktemp(f"de-{model}"), f"model={model}", *DE_PIPELINE_OVERRIDES)
        context = RunContext.from_config(config, spark=self.spark)
        started = time.perf_counter()
        with timed("the shared DE pipelines (every stage of a model, in-process, once per run)"):
            results = {result.stage: result for result in run_stages(list(config.pipeline.stages), config, context)}
        self[model] = {"ctx": context, "results": results, "wall_seconds": time.perf_counter() - started}
        return self[model]


def copy_world(source: Path, target: Path) -> Path:
    """A private copy of a pipeline world, its MLflow store repointed at the copy's own artifacts.

    The store holds absolute artifact locations; left as they are, the copy's runs would write
    into the original world, which other modules share.
    """
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("locks"))
    with contextlib.closing(sqlite3.connect(target / "mlflow" / "mlflow.db")) as store:
        for (table,) in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in store.execute(f"PRAGMA table_info('{table}')").fetchall():
                if any(kind in column[2].upper() for kind in ("CHAR", "TEXT")):
                    store.execute(
                        f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) WHERE "{column[1]}" LIKE ?',
                        (str(source), str(target), f"%{source}%"),
                    )
        store.commit()
    return target


@contextlib.contextmanager
def every_stage_run(cfg: Any, spark: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(the RunContext, stage -> StageResult) of every stage of pipeline.stages on `cfg`'s world,
    with MLflow pointed back where it was afterwards."""
    from mlops.cli import run_stages
    from mlops.runtime import RunContext

    with mlflow_state_kept():
        ctx = RunContext.from_config(cfg, spark=spark)
        yield ctx, {result.stage: result for result in run_stages(list(cfg.pipeline.stages), cfg, ctx)}


@pytest.fixture(scope="session")
def de_pipelines(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> DePipelines:
    return DePipelines(tmp_path_factory, spark)


@pytest.fixture(scope="session")
def job_environment(tmp_path_factory: pytest.TempPathFactory):
    """The jobs' own environment (integration_tests/job_environment.py): the synced files outside the
    checkout and a Python with exactly the job environment's packages; built ahead by .ci/run, cached
    between runs. Without a package index to install from, the tests that need it are skipped with
    pip's reason, never silently."""
    from integration_tests.job_environment import EnvironmentUnavailable, prepare

    try:
        with timed("the jobs' environment (synced files and wheel; the environment built or reused)"):
            return prepare(tmp_path_factory.mktemp("synced-files"))
    except EnvironmentUnavailable as error:
        pytest.skip(f"cannot build the job environment (no package index?): {error}")
