"""Composing and checking the Hydra config, the same way for scripts and tests."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlops import schema
from mlops.errors import ConfigError
from mlops.population import population_of

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


ISO_TIMESTAMP_REGEX = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"


def _two_digits(n: int) -> str:
    """A one- or two-letter number field as Spark parses it: `d` takes 1 or 2 digits, `dd` exactly 2."""
    return r"\d{2}" if n == 2 else r"\d{1,2}"


# Spark datetime pattern letters -> what each run of them matches (by run length where it matters)
_PATTERN_PARTS = {
    "y": lambda n: r"\d{2}" if n == 2 else r"\d{4}",
    "M": lambda n: _two_digits(n) if n <= 2 else (r"[A-Za-z]{3}" if n == 3 else r"[A-Za-z]+"),
    "L": _two_digits,
    "d": _two_digits,
    "H": _two_digits,
    "h": _two_digits,
    "k": _two_digits,
    "K": _two_digits,
    "m": _two_digits,
    "s": _two_digits,
    "S": lambda n: r"\d{1,9}",
    "a": lambda n: r"[AaPp][Mm]",
    "E": lambda n: r"[A-Za-z]+",
}
# letters whose runs are numbers: next to another without a separator (yyyyMMdd) each has its
# written width, since nothing else tells where one ends (Spark parses them so too)
_NUMERIC_LETTERS = frozenset("yMLdHhkKmsS")


def _pattern_tokens(text: str) -> list[tuple[str, int]]:
    """A Spark datetime pattern as (letter, run length) and (quoted or other literal text, 0)."""
    tokens, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "'":  # a quoted literal; '' is a single quote
            end = text.find("'", index + 1)
            end = len(text) if end < 0 else end
            tokens.append((text[index + 1 : end] or "'", 0))
            index = end + 1
            continue
        run = len(text) - index - len(text[index:].lstrip(char))
        tokens.append((char, run) if char.isalpha() else (char * run, 0))
        index += run
    return tokens


def timestamp_regex(timestamp_format: str | None) -> str:
    """The regex the source contract checks dates with: ISO when no format is configured, else
    the configured Spark datetime pattern, so the contract and the parser agree on what a date is."""
    if not timestamp_format:
        return ISO_TIMESTAMP_REGEX
    text = str(timestamp_format)
    tokens = _pattern_tokens(text)

    def numeric(position: int) -> bool:
        if not 0 <= position < len(tokens):
            return False
        letter, run = tokens[position]
        return run > 0 and letter in _NUMERIC_LETTERS and not (letter == "M" and run >= 3)

    parts = []
    for position, (token, run) in enumerate(tokens):
        if not run:
            parts.append(re.escape(token))
        elif token not in _PATTERN_PARTS:
            raise ConfigError(
                f"use_case.source.timestamp_format={text!r}: pattern letter {token!r} is not supported",
                where="config key use_case.source.timestamp_format",
                fix="use y M d H h m s S a E letters, e.g. dd/MM/yyyy HH:mm",
            )
        elif run > 1 and numeric(position) and (numeric(position - 1) or numeric(position + 1)):
            parts.append(r"\d{4}" if token == "y" and run != 2 else rf"\d{{{run}}}")
        else:
            parts.append(_PATTERN_PARTS[token](run))
    return "^" + "".join(parts) + "$"


def _register_resolvers() -> None:
    # `abspath` pins relative storage roots to the directory the script was started from,
    # so Spark, MLflow and deltalake all see the same absolute location.
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda p: os.path.abspath(os.path.expanduser(str(p))))
    # the source contract's date check follows use_case.source.timestamp_format
    if not OmegaConf.has_resolver("timestamp_regex"):
        OmegaConf.register_new_resolver("timestamp_regex", timestamp_regex)
        OmegaConf.register_new_resolver("timestamp_pattern", lambda f: f or "ISO YYYY-MM-DD HH:MM[:SS]")
        OmegaConf.register_new_resolver("neg", lambda value: -value)


_register_resolvers()
# the config groups' structured configs (Hydra's ConfigStore), named by each group file's defaults list:
# before any composition, whether by @hydra.main or compose_config
schema.register()


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
_composed: dict[tuple[str, str, str, tuple[str, ...]], DictConfig] = {}


def build(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, except that a PipelineError raised while building (a world that
    refuses its settings) keeps its message and exit code instead of becoming Hydra's
    InstantiationException."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from mlops.errors import PipelineError

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, PipelineError):
            raise error.__cause__ from None
        raise


def compose_config(
    overrides: Sequence[str] = (), config_dir: Path | str | None = None, config_name: str = "config"
) -> DictConfig:
    """Compose conf/config.yaml (or another primary config, e.g. a study's) outside @hydra.main
    (tests, the studies' pipeline runs, IDE sessions).

    Every call returns its own copy: callers add keys under open_dict.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    directory = Path(config_dir or CONF_DIR)
    key = (str(directory), _fingerprint(directory), config_name, tuple(overrides))
    if key not in _composed:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            _composed[key] = compose(config_name=config_name, overrides=list(overrides))
    return copy.deepcopy(_composed[key])


# metrics whose range is not [0, 1]: kappa can be negative; lift (lift_at_<k>) has no upper bound
SIGNED_METRICS = frozenset({"qwk"})


def _between(
    cfg: DictConfig, key: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False, fix: str
) -> None:
    """A number's range. Its type (a whole number where a fraction would be truncated) is the schema's,
    checked when the config is composed (mlops.schema); a number at all is checked here for the one
    place the schema leaves untyped, model.gate.thresholds' bounds."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not a number", where=f"config key {key}", fix=fix)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ConfigError(f"{key}={value!r} is outside {lo}{low}, {high}{hi}", where=f"config key {key}", fix=fix)


def validate_config(cfg: DictConfig) -> None:
    """Reject values that would make a stage silently produce nonsense (checked before any work).

    Types, choices and unknown keys are checked earlier, when the config is composed (mlops.schema);
    these are the rules a type cannot express: ranges, dates, names, and rules that span groups.
    """
    _between(cfg, "seed", 0, 2**31 - 1, fix="use a non-negative integer seed, e.g. seed=42")
    _between(cfg, "env.sample_fraction", 0, 1, low_open=True, fix="a share of customers in (0, 1], e.g. 0.25")
    _between(
        cfg,
        "use_case.split.test_fraction",
        0,
        1,
        low_open=True,
        high_open=True,
        fix="a share of customers in (0, 1), e.g. 0.3",
    )
    _between(cfg, "model.horizon_days", 1, 3660, fix="a horizon in whole days >= 1, e.g. model.horizon_days=90")
    _between(cfg, "use_case.snapshots.cadence_months", 1, 120, fix="whole months >= 1, e.g. 1")
    _between(
        cfg,
        "inference.backfill.cadence_months",
        1,
        120,
        fix="whole months >= 1, e.g. inference.backfill.cadence_months=1",
    )
    _between(cfg, "inference.max_days_after_data", 0, 366, fix="whole days >= 0, e.g. inference.max_days_after_data=7")
    _check_guards(cfg)
    _check_names(cfg)
    timestamp_regex(
        OmegaConf.select(cfg, "use_case.source.timestamp_format")
    )  # its letters, before a contract needs it
    _between(cfg, "model.inference.threshold", 0, 1, fix="a probability in [0, 1], e.g. 0.5")
    _between(
        cfg,
        "evaluation.confidence",
        0,
        1,
        low_open=True,
        high_open=True,
        fix="the bootstrap intervals' level in (0, 1), e.g. evaluation.confidence=0.9",
    )
    _between(cfg, "monitoring.psi_threshold", 0, 10, low_open=True, fix="a PSI above 0, e.g. 0.25")
    _between(cfg, "model.monitoring.min_performance", -1, 1, fix="a metric value, e.g. 0.6")
    for metric in OmegaConf.select(cfg, "model.gate.thresholds") or {}:
        low = -1 if metric in SIGNED_METRICS else 0
        high = None if str(metric).startswith("lift") else 1
        for side in ("min", "max"):
            if high is not None:
                _between(
                    cfg,
                    f"model.gate.thresholds.{metric}.{side}",
                    low,
                    high,
                    fix=f"{metric} lies in [{low}, {high}]; e.g. model.gate.thresholds.{metric}.{side}=0.6",
                )
    _check_gate_rules(cfg)
    _between(cfg, "model.calibration.snapshots", 1, 120, fix="whole snapshots >= 1, e.g. model.calibration.snapshots=1")
    _check_names_match_model_and_country(cfg)
    check_source_allowed(cfg)
    for date_key in ("observed_until", "start_date", "end_date"):
        value = cfg.use_case.snapshots.get(date_key)
        if value is not None:
            parse_date(value, f"use_case.snapshots.{date_key}")
    test_date = OmegaConf.select(cfg, "use_case.split.test_date")
    if test_date is not None:
        parse_date(test_date, "use_case.split.test_date")
    population_of(cfg).check(cfg)


def _check_gate_rules(cfg: DictConfig) -> None:
    """A rule on a metric the evaluation does not compute, or on an interval it does not draw, would
    fail every candidate with a message about a missing value instead of the config."""
    metrics = [str(name) for name in OmegaConf.select(cfg, "model.metrics") or []]
    for against in ("baseline", "champion"):
        key = f"model.gate.versus_{against}"
        rule = OmegaConf.select(cfg, key)
        if rule is None:
            continue
        if str(rule.metric) not in metrics:
            raise ConfigError(
                f"{key}.metric={rule.metric} is not one of model.metrics {metrics}",
                where=f"config key {key}.metric",
                fix=f"one of {metrics}, or add it to model.metrics",
            )
        if against == "baseline" and not OmegaConf.select(cfg, "model.baseline"):
            raise ConfigError(
                f"{key} compares with model.baseline, which is null",
                where=f"config key {key}",
                fix=f"configure model.baseline, or {key}=null",
            )
        if str(rule.end) != "estimate" and int(OmegaConf.select(cfg, "evaluation.bootstrap_resamples") or 0) <= 0:
            raise ConfigError(
                f"{key}.end={rule.end} needs an interval, but evaluation.bootstrap_resamples is 0",
                where="config key evaluation.bootstrap_resamples",
                fix=f"evaluation.bootstrap_resamples=200, or {key}.end=estimate",
            )


def _check_guards(cfg: DictConfig) -> None:
    """The plausibility guards' own settings: a typo here would switch a guard off silently."""
    prefix = "use_case.guards"
    _between(cfg, f"{prefix}.max_duplicate_share", 0, 1, fix="a share in [0, 1], e.g. 0.1")
    _between(cfg, f"{prefix}.max_history_years", 1, 100, fix="whole years, e.g. 10")
    _between(cfg, f"{prefix}.max_leading_gap_days", 0, 36600, fix="whole days, e.g. 120")
    _between(cfg, f"{prefix}.leading_share", 0, 0.5, high_open=True, fix="a share in [0, 0.5), e.g. 0.01")
    _between(cfg, f"{prefix}.max_abs_quantity", 1, 1e12, fix="a whole number, e.g. 100000")
    _between(cfg, f"{prefix}.max_price", 0, 1e12, low_open=True, fix="a price, e.g. 10000")
    _between(cfg, f"{prefix}.max_shrink_share", 0, 1, fix="a share in [0, 1], e.g. 0.5")
    _between(cfg, f"{prefix}.max_customer_drop_share", 0, 1, fix="a share in [0, 1], e.g. 0.1")
    daily = OmegaConf.select(cfg, f"{prefix}.daily_duplicates")
    if daily is not None and daily not in ("keep", "refuse"):
        raise ConfigError(
            f"{prefix}.daily_duplicates={daily!r}", where=f"config key {prefix}.daily_duplicates", fix="keep or refuse"
        )
    earliest = OmegaConf.select(cfg, f"{prefix}.earliest_date")
    if earliest is not None:
        parse_date(earliest, f"{prefix}.earliest_date")


# names that become folder, lock-file and workspace-path parts
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


def _check_names(cfg: DictConfig) -> None:
    """Names that reach the disk (lock files, artifact folders, workspace paths), checked before
    anything is created: no separators where a plain name is meant, and never `..`."""
    for key in ("use_case.name", "country.suffix", "model.name"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not _PLAIN_NAME.fullmatch(str(value)):
            raise ConfigError(
                f"{key}={value!r} is not a plain name",
                where=f"config key {key}",
                fix="letters, digits and underscores only: it names tables, files and jobs",
            )
    experiment = OmegaConf.select(cfg, "use_case.experiment")
    if experiment is not None:
        text = str(experiment)
        segments = text.split("/")
        bad = (
            ".." in segments
            or "." in segments
            or "\\" in text
            or "\x00" in text
            or not segments[-1]
            or ("/" in text and not text.startswith("/"))
        )
        if bad:
            raise ConfigError(
                f"use_case.experiment={text!r} is not a safe experiment name",
                where="config key use_case.experiment",
                fix="a plain name, or an absolute workspace path such as "
                "/Shared/ac-mlops/dev/clv_repurchase_de, without '..' or '\\'",
            )


def bundled_sample_allowed(cfg: DictConfig) -> bool:
    """Whether this env may use the packaged sample; an env that does not say is treated as real."""
    return OmegaConf.select(cfg, "env.allow_bundled_sample", default=False) is True


def check_source_allowed(cfg: DictConfig) -> None:
    # staging and prod train what serves customers: on the packaged sample (~100 customers per
    # country) a run would succeed and promote a model of the wrong population
    from hydra.utils import get_class

    target = OmegaConf.select(cfg, "use_case.source._target_")
    if target and getattr(get_class(target), "packaged_sample", False) and not bundled_sample_allowed(cfg):
        raise ConfigError(
            f"env {cfg.env.name} serves real customers, but use_case/source=bundled is the "
            "packaged sample (about 100 customers per country)",
            where="config group use_case/source",
            fix="read the real transactions: use_case/source=table use_case.source.table="
            "<catalog.schema.table> (the bundle's jobs pass var.source_table), or use_case/source="
            "csv / parquet with use_case.source.path",
        )


def _check_names_match_model_and_country(cfg: DictConfig) -> None:
    # Bundle jobs pass the deployed registered model and experiment names as parameters (a dev
    # deployment prefixes them); a name of another model or country would mix up two models.
    expected = f"{cfg.use_case.name}_{cfg.model.name}_{cfg.country.suffix}"
    for key in ("use_case.registered_model", "use_case.experiment"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not str(value).endswith(expected):
            raise ConfigError(
                f"{key}={value!r} is not the {cfg.model.name} model of country {cfg.country.code}",
                where=f"config key {key}",
                fix=f"a name ending in {expected!r}, or leave it out to use the default",
            )


def parse_date(value: object, key: str):
    """Config dates are ISO strings; a typo must fail here, not as an empty table later."""
    import datetime as dt

    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(
            f"{key}={value!r} is not a date", where=f"config key {key}", fix="write dates as YYYY-MM-DD"
        ) from None
