"""The config's schema: one Hydra structured config (a dataclass in Hydra's ConfigStore) per config group.

Every group file starts with `defaults: [schema, _self_]` (conf/config.yaml with `config_schema`), so
Hydra composes each YAML file onto its dataclass: a value of the wrong type (`model.horizon_days=abc`),
a choice outside an Enum (`evaluation.run_mode=enabeld`) or an unknown key (`model.horizon_dayz=3`)
fails while the config is composed, naming the key, the value and what is allowed, before any script
runs. mlops.config registers these when it is imported (every script and compose_config import it).

What a type cannot say stays in mlops.config.validate_config: ranges, dates, names, and rules that span
groups.

How the dataclasses are written:
- a field without a default (MISSING) must be set by every file of the group; a default is for keys
  a file may leave out (the code reads them with .get()).
- choices are Enums of `Choice`, a `str` Enum: `cfg.evaluation.run_mode == "enabled"` and
  `str(cfg.evaluation.run_mode)` behave as with the plain strings of before (OmegaConf returns the
  member), and a member's name is its value, since OmegaConf looks members up by name.
- Hydra `_target_` nodes (estimators, feature, label and cleaning functions, targets, populations) and
  the Great Expectations suites are free-form (`Any`): their keys are the arguments of whatever they
  name; the use case's plug-ins check their own choices (the platform schema knows no use case).
- env.spark, env.tables, env.feature_store and use_case.source are sub-groups of their own
  (conf/env/<name>/, conf/use_case/source/), free-form here.
- an `Any` whose shape only OmegaConf cannot type, since the code checks it (the suites, the gate's
  bounds, the stage graph), carries CHECKED_IN_CODE: the MLflow run then records it as written,
  where it records other `Any` maps as free-form, values masked (mlops.redact.redacted_config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

# field metadata: the team's own settings in a shape that code checks, not a map handed to a library
CHECKED_IN_CODE = {"checked_in_code": True}


class Choice(str, Enum):
    """A closed choice: compares, hashes, prints and formats as its plain string value."""

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]


class RunMode(Choice):
    """evaluation.run_mode: what the gate's verdict does (scripts/evaluate.py)."""

    disabled = "disabled"
    dry_run = "dry_run"
    enabled = "enabled"


class SplitKind(Choice):
    """use_case.split.kind: held-out customers, or out of time."""

    customer = "customer"
    time = "time"


class IntervalEnd(Choice):
    """model.gate.versus_*.end: which end of the paired difference's interval must reach `min`."""

    low = "low"  # significantly better (by at least min)
    estimate = "estimate"  # better on the point estimate, noise or not
    high = "high"  # not significantly worse


class CalibrationMethod(Choice):
    """model.calibration.method: the calibrator fitted on the latest training snapshots."""

    sigmoid = "sigmoid"
    isotonic = "isotonic"


class Alias(Choice):
    """promote.alias: the registry alias scripts/promote.py points at a version."""

    champion = "champion"
    challenger = "challenger"


# ----------------------------------------------------------------------------------- env


@dataclass
class MlflowConfig:
    tracking_uri: str = MISSING
    registry_uri: str = MISSING
    artifact_root: str | None = MISSING
    experiment_prefix: str = MISSING


@dataclass
class EnvConfig:
    """conf/env/<name>.yaml: where the pipeline runs."""

    name: str = MISSING
    run_missing_upstream: bool = MISSING
    # an env that does not say is treated as serving real customers
    allow_bundled_sample: bool = False
    sample_fraction: float = MISSING
    storage_root: str = MISSING
    catalog: str = MISSING
    schema: str = MISSING
    # null: a second run does not wait for the first
    lock_timeout_seconds: float | None = None
    mlflow: MlflowConfig = MISSING
    # sub-groups conf/env/spark, conf/env/tables, conf/env/feature_store (`_target_` nodes)
    spark: Any = MISSING
    tables: Any = MISSING
    feature_store: Any = MISSING


# ------------------------------------------------------------------------------ use_case


@dataclass
class SampleConfig:
    package: str = MISSING
    file: str = MISSING


@dataclass
class CleaningConfig:
    # a `_target_` node: the use case's cleaning function and its arguments (their choices are the
    # use case's to check, e.g. clv.population.CountryPopulation.check)
    fn: Any = MISSING


@dataclass
class GuardsConfig:
    max_duplicate_share: float = MISSING
    # without invoices or times of day, lines that repeat within a customer's day: keep | refuse
    daily_duplicates: str = "keep"
    # null: max_history_years before the latest transaction
    earliest_date: str | None = None
    max_history_years: int = MISSING
    max_leading_gap_days: int = MISSING
    leading_share: float = MISSING
    max_abs_quantity: int = MISSING
    max_price: float = MISSING
    # null: a table may shrink by any share
    max_shrink_share: float | None = None
    # null: a new extract may hold any share fewer customers
    max_customer_drop_share: float | None = None
    allow_shrink: bool = False


@dataclass
class SnapshotsConfig:
    observed_until: str | None = None
    end_date: str | None = None
    start_date: str | None = None
    cadence_months: int = MISSING


@dataclass
class SplitConfig:
    kind: SplitKind = SplitKind.customer
    test_fraction: float = MISSING
    test_date: str | None = None


@dataclass
class UseCaseConfig:
    """conf/use_case/<name>.yaml: the data, its cleaning and tables."""

    name: str = MISSING
    sample: SampleConfig | None = None
    # sub-group conf/use_case/source (a `_target_` node), plus the use case's own source keys
    source: Any = MISSING
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    guards: GuardsConfig = MISSING
    snapshots: SnapshotsConfig = MISSING
    split: SplitConfig = MISSING
    timestamp_column: str = MISSING
    key_columns: list[str] = MISSING
    scoring_key: str = MISSING
    record_column: str = MISSING
    # a `_target_` node (mlops.population.Population); null: everyone
    population: Any = None
    tables: dict[str, str] = MISSING
    journal_table: str = MISSING
    registered_model: str = MISSING
    experiment: str = MISSING
    # Great Expectations suites: table key -> expectations
    quality: dict[str, Any] = field(default_factory=dict, metadata=CHECKED_IN_CODE)


# --------------------------------------------------------------------------------- model


@dataclass
class JobsConfig:
    training_cron: str = MISSING
    scoring_cron: str = MISSING


@dataclass
class FeaturesConfig:
    fn: Any = MISSING  # a `_target_` node
    # null: every column of the feature table except the keys
    columns: list[str] | None = None


@dataclass
class LabelConfig:
    column: str = MISSING
    fn: Any = MISSING  # a `_target_` node


@dataclass
class TrainingConfig:
    max_rows: int = MISSING


@dataclass
class BaselineConfig:
    estimator: Any = MISSING  # a `_target_` node
    # a method of the estimator (prob_repurchase | expected_value for clv.baselines.BGNBDBaseline)
    method: str = MISSING
    columns: list[str] = MISSING


@dataclass
class PairedRule:
    """A bound on the paired bootstrap interval of the candidate's improvement over a reference."""

    metric: str = MISSING
    end: IntervalEnd = IntervalEnd.high
    min: float = 0.0


@dataclass
class GateConfig:
    # metric -> {min: ..., max: ...}; the bounds are not typed here (OmegaConf applies no type to the
    # values of a dict nested in a dict), validate_config checks them
    thresholds: dict[str, Any] = field(default_factory=dict, metadata=CHECKED_IN_CODE)
    versus_baseline: PairedRule | None = None
    versus_champion: PairedRule | None = None


@dataclass
class CalibrationConfig:
    # null: the estimator's own probabilities
    method: CalibrationMethod | None = None
    # the latest training snapshots the calibrator is fitted on (the estimator on the earlier ones)
    snapshots: int = 1


@dataclass
class ModelInferenceConfig:
    threshold: float | None = None


@dataclass
class ModelMonitoringConfig:
    performance_metric: str = MISSING
    skip_drift: list[str] = field(default_factory=list)
    min_performance: float = MISSING


@dataclass
class ModelConfig:
    """conf/model/<name>.yaml (and conf/model_country/<model>_<country>.yaml on top): one model."""

    name: str = MISSING
    resource_name: str = MISSING
    jobs: JobsConfig = MISSING
    horizon_days: int = MISSING
    features: FeaturesConfig = MISSING
    label: LabelConfig = MISSING
    target: Any = MISSING  # a `_target_` node (mlops.targets)
    estimator: Any = MISSING  # a `_target_` node
    training: TrainingConfig = MISSING
    metrics: list[str] = MISSING
    baseline: BaselineConfig | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    # Great Expectations suites added to the use case's: table key -> expectations
    quality: dict[str, Any] = field(default_factory=dict, metadata=CHECKED_IN_CODE)
    inference: ModelInferenceConfig = field(default_factory=ModelInferenceConfig)
    monitoring: ModelMonitoringConfig = MISSING


# ------------------------------------------------------------------------------- country


@dataclass
class CountryConfig:
    """conf/country/<code>.yaml: one country."""

    code: str = MISSING
    # null: every country (one pooled population)
    source_value: str | None = MISSING
    suffix: str = MISSING
    timezone: str = MISSING
    # read by the use case's population component (use_case.population), which checks its choices
    training_population: str = "country"
    served_on: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ pipeline


@dataclass
class PipelineConfig:
    """conf/pipeline/<name>.yaml: the stages and jobs (checked by mlops.graph)."""

    stages: list[str] = field(default_factory=list)
    graph: Any = field(default=None, metadata=CHECKED_IN_CODE)
    jobs: Any = field(default=None, metadata=CHECKED_IN_CODE)
    schedules: Any = field(default=None, metadata=CHECKED_IN_CODE)
    nightly: Any = field(default=None, metadata=CHECKED_IN_CODE)


# ------------------------------------------------------------------------ conf/config.yaml


@dataclass
class LineageConfig:
    git_commit: str | None = None
    job_run_id: str | None = None


@dataclass
class JournalConfig:
    lease_minutes: float = MISSING


@dataclass
class LakehouseMonitoringConfig:
    targets: list[str] = field(default_factory=list)
    refresh_cron: str = MISSING


@dataclass
class DeploymentConfig:
    nightly_target: str = MISSING
    lakehouse_monitoring: LakehouseMonitoringConfig = MISSING


@dataclass
class BackfillConfig:
    start: str | None = None
    end: str | None = None
    cadence_months: int = MISSING


@dataclass
class InferenceConfig:
    date: str | None = None
    dates: list[str] = field(default_factory=list)
    backfill: BackfillConfig = MISSING
    max_days_after_data: int = MISSING
    evaluate_if_no_champion: bool = False


@dataclass
class MonitoringConfig:
    psi_threshold: float = MISSING
    violations: int = MISSING
    windows: int = MISSING
    max_rows: int = MISSING
    retrain_job_id: int | None = None


@dataclass
class EvaluationConfig:
    run_mode: RunMode = MISSING
    run_id: str | None = None
    bootstrap_resamples: int = MISSING
    confidence: float = MISSING
    importance_rows: int = MISSING
    # [{name: ..., fn: {_target_: ..., _partial_: true}, min: ..., max: ...}]
    custom_metrics: list[Any] = field(default_factory=list, metadata=CHECKED_IN_CODE)


@dataclass
class PromoteConfig:
    version: int | None = None
    alias: Alias = MISSING


@dataclass
class Config:
    """conf/config.yaml: the groups, and the settings of the scripts."""

    seed: int = MISSING
    env: EnvConfig = MISSING
    use_case: UseCaseConfig = MISSING
    model: ModelConfig = MISSING
    country: CountryConfig = MISSING
    pipeline: PipelineConfig = MISSING
    lineage: LineageConfig = MISSING
    journal: JournalConfig = MISSING
    deployment: DeploymentConfig = MISSING
    inference: InferenceConfig = MISSING
    monitoring: MonitoringConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    promote: PromoteConfig = MISSING
    # the report name of a conf/experiment/<name>.yaml (+experiment=<name>, clv.studies.model_quality)
    variant: str | None = None
    # and the metric it is chosen by when not the headline (calibrations of the shipped config: brier)
    choose_by: str | None = None


GROUPS: dict[str, type] = {
    "env": EnvConfig,
    "use_case": UseCaseConfig,
    "model": ModelConfig,
    "country": CountryConfig,
    "pipeline": PipelineConfig,
}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore: `<group>/schema` for each group, and `config_schema`
    for conf/config.yaml. Idempotent. (A use case's own primary configs register theirs, as
    clv.studies does.)"""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, node in GROUPS.items():
        store.store(group=group, name="schema", node=node)
    store.store(name="config_schema", node=Config)
