"""The config's schema (mlops.schema): wrong types, choices and keys fail when the config is composed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mlops import schema
from mlops.config import CONF_DIR, compose_config, validate_config
from mlops.population import population_of

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("env", "use_case", "model", "country", "pipeline")


def composition_error(overrides: list[str], config_dir: Path | None = None) -> str:
    """What Hydra reports: its own line (which override or file) and OmegaConf's (key, value, what is allowed)."""
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config(overrides, config_dir=config_dir)
    return f"{raised.value}\n{raised.value.__cause__ or ''}"


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("model.horizon_days=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("evaluation.run_mode=enabeld", "Invalid value 'enabeld', expected one of [disabled, dry_run, enabled]"),
        ("use_case.split.kind=random", "Invalid value 'random', expected one of [customer, time]"),
        ("promote.alias=champ", "Invalid value 'champ', expected one of [champion, challenger]"),
        ("env.sample_fraction=most", "Value 'most' of type 'str' could not be converted to Float"),
        ("env.run_missing_upstream=maybe", "Value 'maybe' is not a valid bool"),
        ("model.horizon_days=null", "field 'model.horizon_days' is not Optional"),
        ("model.gate.versus_baseline.end=lower", "Invalid value 'lower', expected one of [low, estimate, high]"),
        ("model.calibration.method=platt", "Invalid value 'platt', expected one of [sigmoid, isotonic]"),
    ],
)
def test_a_wrong_type_or_choice_names_the_key_the_value_and_what_is_allowed(override, says):
    key = override.split("=", 1)[0]
    message = composition_error([override])
    assert f"override {override}" in message and says in message
    assert f"full_key: {key}" in message or f"'{key}'" in message


@pytest.mark.parametrize("override", ["model.horizon_dayz=3", "evaluation.runmode=dry_run", "env.sampel_fraction=0.5"])
def test_an_unknown_key_is_a_typo(override):
    key = override.split("=", 1)[0]
    group, name = key.rsplit(".", 1)
    message = composition_error([override])
    assert f"Could not override '{key}'" in message and f"Key '{name}' not in" in message


def test_a_typo_in_a_group_file_fails_and_names_the_file(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    model = conf / "model" / "repurchase.yaml"
    model.write_text(model.read_text().replace("\nhorizon_days: 90\n", "\nhorizon_dayz: 90\n"))
    message = composition_error(["model=repurchase"], config_dir=conf)
    assert "In 'model/repurchase'" in message and "Key 'horizon_dayz' not in 'ModelConfig'" in message


def test_a_wrong_value_in_a_group_file_fails_and_names_the_file(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    country = conf / "country" / "FR.yaml"
    country.write_text(country.read_text().replace("timezone: Europe/Paris", "timezone: [Europe/Paris]"))
    message = composition_error(["country=FR"], config_dir=conf)
    assert "In 'country/FR'" in message and "timezone" in message


def test_every_group_file_and_the_primary_configs_start_from_their_schema():
    for group in GROUPS:
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            defaults = OmegaConf.load(path).get("defaults")
            assert defaults and defaults[0] == "schema", path
    assert OmegaConf.load(CONF_DIR / "config.yaml").defaults[0] == "config_schema"
    for study in ("benchmark", "quality"):
        assert f"{study}_schema" in OmegaConf.load(CONF_DIR / f"{study}.yaml").defaults
    cfg = compose_config([])
    assert OmegaConf.get_type(cfg) is schema.Config
    for group, node in schema.GROUPS.items():
        assert OmegaConf.get_type(cfg[group]) is node


def test_choices_read_as_the_plain_strings_they_were():
    """OmegaConf returns an Enum member: a `str` Enum keeps comparisons, str() and f-strings as before."""
    cfg = compose_config(["evaluation.run_mode=dry_run", "use_case.split.kind=time"])
    run_mode = cfg.evaluation.run_mode
    assert run_mode is schema.RunMode.dry_run
    assert run_mode == "dry_run" and run_mode in ("disabled", "dry_run") and run_mode != "enabled"
    assert str(run_mode) == f"{run_mode}" == "dry_run" and type(str(run_mode)) is str
    assert {"dry_run": 1}[run_mode] == 1
    assert cfg.use_case.split.kind == "time"
    assert OmegaConf.to_container(cfg.evaluation, resolve=True, enum_to_str=True)["run_mode"] == "dry_run"
    assert "run_mode: dry_run" in OmegaConf.to_yaml(cfg.evaluation)


def test_the_population_and_cleaning_see_the_choices_as_strings():
    cfg = compose_config(
        ["country=DE", "country.training_population=pooled", "use_case.cleaning.fn.country_match=exact"]
    )
    validate_config(cfg)
    population = population_of(cfg)
    assert population.pooled and population.kind == "pooled" and population.country_match == "exact"
    assert population.cleaning_function(cfg.use_case.cleaning.fn).keywords["country_match"] == "exact"


def test_target_nodes_stay_free_form():
    """A `_target_` node's keys are the arguments of what it names: any key may be added with `+`."""
    cfg = compose_config(
        ["+model.estimator.l2_regularization=0.1", "+use_case.cleaning.fn.extra=1", "+model.features.fn.other=2"]
    )
    assert cfg.model.estimator.l2_regularization == 0.1 and cfg.use_case.cleaning.fn.extra == 1
    # ... and, as elsewhere, a key that is not there needs the `+`
    assert "Could not override 'model.estimator.l2_regularization'" in composition_error(
        ["model.estimator.l2_regularization=0.1"]
    )


def test_optional_values_take_null_and_defaults_fill_what_a_file_leaves_out():
    cfg = compose_config(["model=ltv_bucket", "env=dev"])
    assert cfg.model.inference.threshold is None  # null in conf/model/ltv_bucket.yaml
    assert cfg.env.lock_timeout_seconds is None  # not in conf/env/dev.yaml
    assert compose_config(["country.source_value=null"]).country.source_value is None
    assert compose_config(["model.horizon_days=30"]).model.horizon_days == 30


def test_an_experiment_and_the_studies_primary_configs_compose():
    from clv.studies import schema as study_schema  # importing clv.studies registers the studies' schemas

    assert compose_config(["+experiment=depth2_50trees"]).variant == "depth 2, 50 trees"
    benchmark = compose_config(config_name="benchmark", overrides=["benchmark.seed=3"])
    assert benchmark.benchmark.seed == 3 and benchmark.seed == 42  # the pipeline's values are kept
    assert OmegaConf.get_type(benchmark) is study_schema.BenchmarkConfig
    quality = compose_config(config_name="quality")
    assert OmegaConf.get_type(quality) is study_schema.QualityConfig and quality.quality.bootstrap == 200
    with pytest.raises(ConfigCompositionException):
        compose_config(config_name="benchmark", overrides=["benchmark.seed=abc"])


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("model.horizon_days=abc", ["model.horizon_days", "'abc'", "Integer"]),
        ("evaluation.run_mode=enabeld", ["evaluation.run_mode", "'enabeld'", "[disabled, dry_run, enabled]"]),
    ],
)
def test_a_script_reports_a_composition_error_in_a_few_lines(tmp_path, override, says):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), override],
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert all(part in result.stderr for part in says) and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 8
    assert list(tmp_path.iterdir()) == []  # failed before anything was written
