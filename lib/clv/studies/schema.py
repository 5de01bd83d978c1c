"""The schemas of the studies' primary configs (conf/benchmark.yaml, conf/quality.yaml): the pipeline's
Config (mlops.schema) plus the study's own section. They live with the studies, since the platform's
schema knows no use case; importing clv.studies registers them before anything composes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mlops.schema import Config


@dataclass
class BenchmarkSettings:
    sizes: list[str] = MISSING
    real: str | None = None
    scoring_customers: str = MISSING
    seed: int = MISSING
    pandas: bool = MISSING
    out: str = MISSING
    snapshot_start: str = MISSING
    population: list[str] = MISSING
    sample_stages: list[str] = MISSING
    sample: list[str] = MISSING


@dataclass
class BenchmarkConfig(Config):
    """conf/benchmark.yaml: conf/config.yaml plus `benchmark`. Listed after `config` in its defaults:
    a schema merges onto its base class's, not the other way round."""

    benchmark: BenchmarkSettings = MISSING


@dataclass
class QualitySettings:
    data: str | None = None
    report_from: list[str] = field(default_factory=list)
    cutoffs: list[str] = MISSING
    models: list[str] = MISSING
    experiments: list[str] = MISSING
    country_models: list[str] = MISSING
    bootstrap: int = MISSING
    paired: dict[str, list[str]] = MISSING
    out: str = MISSING
    doc: str = MISSING
    pooled: list[str] = MISSING
    populations: dict[str, Any] = MISSING
    baseline_names: dict[str, str] = MISSING
    heuristics: dict[str, Any] = MISSING
    goals: list[Any] = MISSING


@dataclass
class QualityConfig(Config):
    """conf/quality.yaml: conf/config.yaml plus `quality` (listed after `config`, as benchmark_schema)."""

    quality: QualitySettings = MISSING


def register() -> None:
    """Store `benchmark_schema` and `quality_schema` in Hydra's ConfigStore. Idempotent."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="benchmark_schema", node=BenchmarkConfig)
    store.store(name="quality_schema", node=QualityConfig)
