"""Shared fixtures: the real configs composed once, one local Spark session for the whole run."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from mlops.config import compose_config

REPO = Path(__file__).resolve().parents[1]


def local_config(storage_root: Path, *overrides: str) -> DictConfig:
    """The real local config, writing under `storage_root`, with small-run settings."""
    cfg = compose_config([f"env.storage_root={storage_root}", *overrides])
    with open_dict(cfg):
        cfg.env.spark.conf["spark.sql.shuffle.partitions"] = "2"
    return cfg


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session_root")


@pytest.fixture(scope="session")
def spark(session_root: Path) -> Iterator:
    from mlops.runtime import get_spark

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
