"""Composing and checking the Hydra config, the same way for scripts and tests."""
from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mlops import population
from mlops.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _register_resolvers() -> None:
    # `abspath` pins relative storage roots to the directory the script was started from,
    # so Spark, MLflow and deltalake all see the same absolute location.
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda p: os.path.abspath(os.path.expanduser(str(p))))


_register_resolvers()


def _fingerprint(config_dir: Path) -> str:
    """The content of every config file: a cached composition is valid while this is unchanged."""
    digest = hashlib.sha256()
    for path in sorted(config_dir.rglob("*.yaml")):
        digest.update(str(path.relative_to(config_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Hydra re-reads and re-parses every YAML file on each compose (~0.5 s); tests and the bundle
# generator compose hundreds of times. Compositions are kept unresolved (interpolations such as
# ${abspath:...} and ${oc.env:...} resolve when read), so a cached one is what Hydra would return.
_composed: dict[tuple[str, str, tuple[str, ...]], DictConfig] = {}


def compose_config(overrides: Sequence[str] = (), config_dir: Path | str | None = None) -> DictConfig:
    """Compose conf/config.yaml outside @hydra.main (tests, run_pipeline, IDE sessions).

    Every call returns its own copy: callers add keys under open_dict.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    directory = Path(config_dir or CONF_DIR)
    key = (str(directory), _fingerprint(directory), tuple(overrides))
    if key not in _composed:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            _composed[key] = compose(config_name="config", overrides=list(overrides))
    return copy.deepcopy(_composed[key])


# metrics whose range is not [0, 1]: kappa can be negative; lift (lift_at_<k>) has no upper bound
SIGNED_METRICS = frozenset({"qwk"})
SPLIT_KINDS = ("customer", "time")


def _between(cfg: DictConfig, key: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
             fix: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not isinstance(value, (int, float)) or isinstance(value, bool) or too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ConfigError(f"{key}={value!r} is outside {lo}{low}, {high}{hi}", where=f"config key {key}", fix=fix)


def validate_config(cfg: DictConfig) -> None:
    """Reject values that would make a stage silently produce nonsense (checked before any work)."""
    _between(cfg, "seed", 0, 2**31 - 1, fix="use a non-negative integer seed, e.g. seed=42")
    _between(cfg, "env.sample_fraction", 0, 1, low_open=True, fix="a share of customers in (0, 1], e.g. 0.25")
    _between(cfg, "use_case.split.test_fraction", 0, 1, low_open=True, high_open=True,
             fix="a share of customers in (0, 1), e.g. 0.3")
    _between(cfg, "model.horizon_days", 1, 3660, fix="a horizon in days >= 1, e.g. model.horizon_days=90")
    _between(cfg, "use_case.snapshots.cadence_months", 1, 120, fix="whole months >= 1")
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r} is not an integer", where="config key seed", fix="e.g. seed=42")
    _between(cfg, "use_case.guards.max_duplicate_share", 0, 1, fix="a share in [0, 1], e.g. 0.1")
    _between(cfg, "model.inference.threshold", 0, 1, fix="a probability in [0, 1], e.g. 0.5")
    _between(cfg, "monitoring.psi_threshold", 0, 10, low_open=True, fix="a PSI above 0, e.g. 0.25")
    _between(cfg, "model.monitoring.min_performance", -1, 1, fix="a metric value, e.g. 0.6")
    for metric, bounds in (OmegaConf.select(cfg, "model.gate.thresholds") or {}).items():
        low = -1 if metric in SIGNED_METRICS else 0
        high = None if str(metric).startswith("lift") else 1
        for side in ("min", "max"):
            if high is not None:
                _between(cfg, f"model.gate.thresholds.{metric}.{side}", low, high,
                         fix=f"{metric} lies in [{low}, {high}]; e.g. model.gate.thresholds.{metric}.{side}=0.6")
    _check_names_match_model_and_country(cfg)
    check_source_allowed(cfg)
    for date_key in ("observed_until", "start_date", "end_date"):
        value = cfg.use_case.snapshots.get(date_key)
        if value is not None:
            parse_date(value, f"use_case.snapshots.{date_key}")
    kind = OmegaConf.select(cfg, "use_case.split.kind")
    if kind is not None and kind not in SPLIT_KINDS:
        raise ConfigError(f"use_case.split.kind={kind!r} is not a split", where="config key use_case.split.kind",
                          fix=f"one of {list(SPLIT_KINDS)}")
    test_date = OmegaConf.select(cfg, "use_case.split.test_snapshot_date")
    if test_date is not None:
        parse_date(test_date, "use_case.split.test_snapshot_date")
    population.check(cfg)


def bundled_sample_allowed(cfg: DictConfig) -> bool:
    """Whether this env may use the packaged sample; an env that does not say is treated as real."""
    return OmegaConf.select(cfg, "env.allow_bundled_sample", default=False) is True


def check_source_allowed(cfg: DictConfig) -> None:
    # staging and prod train what serves customers: on the packaged sample (~100 customers per
    # country) a run would succeed and promote a model of the wrong population
    if OmegaConf.select(cfg, "use_case.source.kind") == "bundled" and not bundled_sample_allowed(cfg):
        raise ConfigError(f"env {cfg.env.name} serves real customers, but use_case.source.kind=bundled is the "
                          "packaged sample (about 100 customers per country)", where="config key use_case.source.kind",
                          fix="read the real transactions: use_case.source.kind=table use_case.source.table="
                              "<catalog.schema.table> (the bundle's jobs pass var.source_table), or kind=csv / "
                              "parquet with use_case.source.path")


def _check_names_match_model_and_country(cfg: DictConfig) -> None:
    # Bundle jobs pass the deployed registered model and experiment names as parameters (a dev
    # deployment prefixes them); a name of another model or country would mix up two models.
    expected = f"{cfg.use_case.name}_{cfg.model.name}_{cfg.country.suffix}"
    for key in ("use_case.registered_model", "use_case.experiment"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not str(value).endswith(expected):
            raise ConfigError(f"{key}={value!r} is not the {cfg.model.name} model of country {cfg.country.code}",
                              where=f"config key {key}",
                              fix=f"a name ending in {expected!r}, or leave it out to use the default")


def parse_date(value: object, key: str):
    """Config dates are ISO strings; a typo must fail here, not as an empty table later."""
    import datetime as dt

    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a date", where=f"config key {key}",
                          fix="write dates as YYYY-MM-DD") from None
