"""Shared fixtures: the real configs composed once, one local Spark session for the whole run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from mlops.config import compose_config
from tests.timing import pytest_configure, timed  # noqa: F401  (the time tables at the end of every run)

REPO = Path(__file__).resolve().parents[1]


def local_config(storage_root: Path, *overrides: str) -> DictConfig:
    """The real local config, writing under `storage_root`, with small-run settings."""
    cfg = compose_config([f"env.storage_root={storage_root}", *overrides])
    with open_dict(cfg):
        cfg.env.spark.conf["spark.sql.shuffle.partitions"] = "2"
    return cfg


@contextlib.contextmanager
def mlflow_state_kept() -> Iterator[None]:
    """MLflow's tracking and registry URIs and the registry's configured experiment as they were
    on entry: runs against private (or deliberately damaged) worlds must not leave this process
    pointed at them for the modules after."""
    from mlops import registry
    from tests.fakes.uc_registry import mlflow_uris_restored

    configured = registry._configured
    try:
        with mlflow_uris_restored():
            yield
    finally:
        registry._configured = configured


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session_root")


@pytest.fixture(scope="session")
def spark(session_root: Path) -> Iterator:
    from mlops.runtime import get_spark

    with timed("Spark session start (one per worker)"):
        session = get_spark(local_config(session_root).env.spark)
    yield session
    session.stop()


@pytest.fixture
def cfg(tmp_path: Path) -> DictConfig:
    return local_config(tmp_path / "root")


@pytest.fixture
def ctx(cfg: DictConfig, spark):
    from mlops.runtime import RunContext

    return RunContext.from_config(cfg, spark=spark)


# Modules that read one session fixture must share a worker, or each worker computes it (minutes).
# Module -> the group it runs in under `pytest -n N --dist loadfile`; other modules are their own group.
SHARED_WORKER_GROUPS = {
    module: "de_pipelines"  # integration_tests/conftest.py::de_pipelines, every stage of both models
    for module in (
        "integration_tests/test_remote.py",
        "integration_tests/test_bad_input.py",
        "integration_tests/test_inference_monitoring.py",
        "integration_tests/test_training_path.py",
        "integration_tests/test_deployment_gate.py",
        "integration_tests/test_run_summary.py",
        # not a reader: it joins the group that has the spare minutes (docs/performance.md)
        "integration_tests/test_model_quality.py",
    )
}


# modules collected first, in this order: the longest groups, so that each starts at once on its own
# xdist worker instead of last, leaving one worker running alone at the end
FIRST = ("integration_tests/test_remote.py", "integration_tests/test_rehearsal.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The remote tests and the bundle rehearsal first (FIRST)."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return FIRST.index(module) if module in FIRST else len(FIRST)

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, except that the modules in SHARED_WORKER_GROUPS go to one worker together.

    A scheduler rather than xdist_group marks: `--dist loadgroup` renames node ids through an
    attribute that pytest 9 no longer reads, so its groups are silently ignored.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesWithSharedFixtures(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_WORKER_GROUPS.get(module, module)

    return ModulesWithSharedFixtures(config, log)
