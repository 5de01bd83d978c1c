"""Every config combination composes, every _target_ builds, and bad values fail before any work."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mlops.config import CONF_DIR, compose_config, validate_config
from mlops.errors import ConfigError
from mlops.population import Population
from mlops.sources import Source
from mlops.tables import TableName
from tests.timing import timed

REPO = Path(__file__).resolve().parents[1]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


COMBINATIONS = list(itertools.product(options("env"), options("model"), options("country")))
# what the bundle's jobs pass every task (var.source_table): envs that serve real customers refuse the sample
TABLE_SOURCE = ["use_case/source=table", "use_case.source.table=prod.clv.clv_source_transactions"]


def targets(node, path="") -> list[tuple[str, DictConfig]]:
    found = []
    if isinstance(node, DictConfig):
        if "_target_" in node:
            found.append((path, node))
        for key in node:
            found += targets(node[key], f"{path}.{key}" if path else str(key))
    return found


def test_the_groups_the_design_names_exist():
    assert {"local", "dev", "staging", "prod", "test"} <= set(options("env"))
    assert {"DE", "GB", "FR"} <= set(options("country"))
    assert "repurchase" in options("model")


@pytest.mark.parametrize(("env", "model", "country"), COMBINATIONS)
def test_every_combination_composes_and_instantiates(env, model, country):
    cfg = compose_config([f"env={env}", f"model={model}", f"country={country}", *TABLE_SOURCE])
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    assert cfg.env.name == env and cfg.country.code == country
    for key in cfg.use_case.tables:
        name = TableName.of(cfg.env.catalog, cfg.env.schema, cfg.use_case.tables[key])
        assert name.table.endswith(f"_{country.lower()}")
    built = targets(cfg)
    assert {path for path, _ in built} >= {
        "model.estimator",
        "model.features.fn",
        "model.label.fn",
        "use_case.cleaning.fn",
    }
    for path, node in built:
        if path.startswith("env."):  # a world, table or feature store needs a session to be built
            assert get_method(node._target_), path
            continue
        built_object = instantiate(node)
        assert (
            callable(built_object) or hasattr(built_object, "fit") or isinstance(built_object, (Population, Source))
        ), path


def test_sample_fraction_is_the_seed_rule_on_databricks():
    fractions = {env: compose_config([f"env={env}"]).env.sample_fraction for env in options("env")}
    assert fractions.pop("prod") == 1.0
    assert fractions.pop("local") == 1.0  # the bundled sample is already an extract
    assert fractions.pop("connect") == 1.0  # the same sample, on a remote Spark server
    assert fractions.pop("test") == 1.0  # the nightly chain runs on the bundled sample too
    assert set(fractions.values()) == {0.25}


@pytest.mark.parametrize("env", options("env"))
def test_only_envs_that_serve_no_real_customers_accept_the_bundled_sample(env):
    cfg = compose_config([f"env={env}"])  # use_case/source=bundled, the default
    if env in ("staging", "prod"):
        with pytest.raises(ConfigError, match=f"env {env} serves real customers.*source=bundled") as raised:
            validate_config(cfg)
        assert raised.value.where == "config group use_case/source" and "use_case.source.table=" in raised.value.fix
    else:
        validate_config(cfg)
    validate_config(compose_config([f"env={env}", *TABLE_SOURCE]))  # a real source is fine everywhere


def test_an_env_that_does_not_say_is_treated_as_serving_real_customers(tmp_path):
    # the schema's default (mlops.schema.EnvConfig): a key the env file leaves out is false, not missing
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    local = conf / "env" / "local.yaml"
    local.write_text(
        "".join(
            line for line in local.read_text().splitlines(keepends=True) if not line.startswith("allow_bundled_sample:")
        )
    )
    cfg = compose_config(["env=local"], config_dir=conf)
    assert cfg.env.allow_bundled_sample is False
    with pytest.raises(ConfigError, match="serves real customers"):
        validate_config(cfg)


def test_storage_root_is_absolute_and_mlflow_lives_under_it():
    cfg = compose_config([])
    assert Path(cfg.env.storage_root).is_absolute()
    assert cfg.env.mlflow.tracking_uri == f"sqlite:///{cfg.env.storage_root}/mlflow/mlflow.db"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.horizon_days=0", "model.horizon_days"),
        ("model.horizon_days=-5", "model.horizon_days"),
        ("env.sample_fraction=0", "env.sample_fraction"),
        ("env.sample_fraction=1.5", "env.sample_fraction"),
        ("use_case.split.test_fraction=1.0", "use_case.split.test_fraction"),
        ("seed=-1", "seed"),
        ("use_case.snapshots.end_date=2011-13-45", "use_case.snapshots.end_date"),
        ("use_case.split.test_date=2011-09-31", "use_case.split.test_date"),
        ("evaluation.confidence=1", "evaluation.confidence=1.0 is outside"),  # a float in the schema
        ("inference.backfill.cadence_months=0", "inference.backfill.cadence_months=0 is outside"),
        ("inference.max_days_after_data=-1", "inference.max_days_after_data"),
        ("use_case.guards.max_history_years=0", "use_case.guards.max_history_years"),
        ("use_case.guards.earliest_date=2009-02-30", "use_case.guards.earliest_date"),
        ("use_case.guards.max_shrink_share=1.5", "use_case.guards.max_shrink_share"),
        ("use_case.guards.max_customer_drop_share=-0.1", "use_case.guards.max_customer_drop_share"),
        ("use_case.guards.daily_duplicates=warn", "use_case.guards.daily_duplicates='warn'"),
        # the use case's own choices, checked by its population (clv.population): the platform's schema knows no use case
        ("country.training_population=everyone", "country.training_population='everyone' is not a population"),
        ("use_case.cleaning.fn.country_match=fuzzy", "country_match='fuzzy' is not a way to match countries"),
        ("use_case.guards.max_price=0", "use_case.guards.max_price"),
        ("use_case.source.timestamp_format='dd/MM/yyyy Q'", "pattern letter 'Q' is not supported"),
        ("country.suffix='../de'", "is not a plain name"),
        ("use_case.name=clv/x", "is not a plain name"),
        ("use_case.experiment='../../x/clv_repurchase_de'", "is not a safe experiment name"),
        ("use_case.experiment='Shared/x/clv_repurchase_de'", "is not a safe experiment name"),
        ("use_case.experiment='/Shared/../clv_repurchase_de'", "is not a safe experiment name"),
        # a gate rule on a metric the evaluation does not compute, or on an interval it does not draw
        ("model.gate.versus_baseline.metric=qwk", r"model.gate.versus_baseline.metric=qwk is not one of model.metrics"),
        ("model.gate.versus_champion.metric=f1", r"model.gate.versus_champion.metric=f1 is not one of model.metrics"),
        ("evaluation.bootstrap_resamples=0", "versus_baseline.end=high needs an interval"),
        ("model.baseline=null", "model.gate.versus_baseline compares with model.baseline, which is null"),
        ("model.calibration.snapshots=0", "model.calibration.snapshots=0 is outside"),
    ],
)
def test_out_of_range_values_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_config([override]))


@pytest.mark.parametrize(
    ("override", "says"),
    [
        # these were validate_config's; the schema (mlops.schema) refuses them while composing
        ("use_case.split.kind=random", "Invalid value 'random', expected one of [customer, time]"),
        ("model.horizon_days=90.5", "Value '90.5' of type 'float' could not be converted to Integer"),
        ("use_case.snapshots.cadence_months=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
        ("seed=forty-two", "Value 'forty-two' of type 'str' could not be converted to Integer"),
    ],
)
def test_wrong_types_and_choices_fail_when_the_config_is_composed(override, says):
    from hydra.errors import ConfigCompositionException

    key = override.split("=", 1)[0]
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config([override])
    message = f"{raised.value}\n{raised.value.__cause__}"
    assert f"override {override}" in message and says in message and f"full_key: {key}" in message


# the repurchase estimator's depth in conf/model/repurchase.yaml (GB has no model_country override)
SHIPPED_DEPTH = 3


def test_model_country_specialisation_is_picked_up(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "model_country" / "repurchase_FR.yaml").write_text(
        "# @package _global_\nmodel:\n  estimator:\n    max_depth: 5\n"
    )
    assert compose_config(["country=FR"], config_dir=conf).model.estimator.max_depth == 5
    assert compose_config(["country=GB"], config_dir=conf).model.estimator.max_depth == SHIPPED_DEPTH


def test_a_repeated_composition_is_independent_and_sees_edited_files(tmp_path):
    """compose_config remembers compositions (Hydra re-parses every YAML file each time, ~0.5 s):
    a caller's edits must not leak into the next caller's config, and an edited file must count."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    first = compose_config(["country=GB"], config_dir=conf)
    with open_dict(first):
        first.model.estimator.max_depth = 99
        first.added = "by the first caller"
    second = compose_config(["country=GB"], config_dir=conf)
    assert second.model.estimator.max_depth == SHIPPED_DEPTH and "added" not in second
    assert second.env.storage_root == first.env.storage_root  # interpolations stay unresolved, per call

    model = conf / "model" / "repurchase.yaml"
    model.write_text(model.read_text().replace(f"max_depth: {SHIPPED_DEPTH}", "max_depth: 6"))
    assert compose_config(["country=GB"], config_dir=conf).model.estimator.max_depth == 6
    (conf / "model_country" / "repurchase_GB.yaml").write_text(
        "# @package _global_\nmodel:\n  estimator:\n    max_depth: 7\n"
    )
    assert compose_config(["country=GB"], config_dir=conf).model.estimator.max_depth == 7


def test_a_relative_storage_root_resolves_against_the_current_directory(tmp_path, monkeypatch):
    cfg = compose_config(["env.storage_root=${abspath:relative-root}"])
    monkeypatch.chdir(tmp_path)
    assert compose_config(["env.storage_root=${abspath:relative-root}"]).env.storage_root == str(
        tmp_path / "relative-root"
    )
    assert cfg.env.storage_root == str(tmp_path / "relative-root")  # resolved when read, not when composed


@timed("a script in a process of its own")
def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cfg_job_and_help_work_and_write_nothing(tmp_path):
    shown = run_script("--cfg", "job", "country=FR", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "source_value: France" in shown.stdout and "_target_: sklearn.ensemble" in shown.stdout
    helped = run_script("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "model: ltv_bucket, repurchase" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log files in the working directory


def test_staging_on_the_bundled_sample_exits_with_the_config_error_before_any_work(tmp_path):
    result = run_script("env=staging", "model=repurchase", "country=DE", cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert "env staging serves real customers" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_on_the_command_line_exits_with_a_clear_message(tmp_path):
    result = run_script("model.horizon_days=0", f"env.storage_root={tmp_path}/root", cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code
    assert "model.horizon_days=0 is outside" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "key, value",
    [
        ("use_case.registered_model", "dev.clv.clv_repurchase_fr"),  # another country's model
        ("use_case.experiment", "/Shared/ac-mlops/dev/clv_ltv_bucket_de"),  # another model's experiment
    ],
)
def test_a_job_parameter_naming_another_model_or_country_is_refused(key, value):
    """Bundle jobs pass registered model and experiment names; a mix-up must not train into the wrong model."""
    cfg = compose_config(["env=dev", "model=repurchase", "country=DE", f"{key}={value}"])
    with pytest.raises(ConfigError, match=f"{key}=.* is not the repurchase model of country DE"):
        validate_config(cfg)


def test_a_dev_deployments_prefixed_names_are_accepted():
    cfg = compose_config(
        [
            "env=dev",
            "use_case.registered_model=dev.clv.dev_jdoe_clv_repurchase_de",
            "use_case.experiment='/Shared/ac-mlops/dev/[dev jdoe] clv_repurchase_de'",
        ]
    )
    validate_config(cfg)
    assert cfg.use_case.experiment == "/Shared/ac-mlops/dev/[dev jdoe] clv_repurchase_de"


def test_lineage_prefers_the_commit_the_bundle_passes(monkeypatch):
    from mlops.lineage import git_commit

    monkeypatch.setenv("GIT_COMMIT", "from-ci")
    assert git_commit(compose_config(["lineage.git_commit=0123abc"])) == "0123abc"
    assert git_commit(compose_config([])) == "from-ci"


@pytest.mark.parametrize("env", options("env"))
def test_only_envs_that_can_cache_dataframes_ask_for_it(env):
    # jobs run on serverless compute, which refuses df.persist(); local Spark and Spark Connect servers do not
    cfg = compose_config([f"env={env}"])
    assert cfg.env.spark.persist is (cfg.env.spark._target_ != "mlops.worlds.DatabricksSpark")


@pytest.mark.parametrize(
    "name",
    [
        "clv_repurchase_de",
        "/Shared/ac-mlops/dev/clv_repurchase_de",
        "/Users/someone@example.com/[dev x] clv_repurchase_de",
    ],
)
def test_plain_and_workspace_experiment_names_are_accepted(name):
    validate_config(compose_config([f"use_case.experiment='{name}'"]))


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (
            None,
            ["2010-12-01 08:26:00", "2010-12-01T08:26", "2010-12-01 08:26:00.5"],
            ["01/12/2010 08:26", "2010-12-01"],
        ),
        ("dd/MM/yyyy HH:mm", ["01/12/2010 08:26"], ["1/12/2010 8:26", "2010-12-01 08:26", "01/12/2010 08:26:00"]),
        ("d/M/yyyy H:mm", ["1/12/2010 8:26", "01/12/2010 08:26"], ["1/12/10 8:26", "1/123/2010 8:26"]),
        ("yyyyMMdd", ["20101201"], ["2010121", "201012011", "2010-12-01"]),
        ("yyyy-MM-dd'T'HH:mm:ss", ["2010-12-01T08:26:00"], ["2010-12-01 08:26:00", "2010-12-1T08:26:00"]),
        ("d MMM yy h:mm a", ["1 Dec 10 8:26 PM"], ["1 12 10 8:26 PM"]),
    ],
)
def test_the_source_date_check_follows_the_timestamp_format(pattern, good, bad, spark):
    """The contract's regex and Spark's parser must agree on what a date is, or the advice is wrong."""
    import re

    from pyspark.sql import functions as F

    from mlops.config import timestamp_regex

    regex = re.compile(timestamp_regex(pattern))
    assert all(regex.match(value) for value in good) and not any(regex.match(value) for value in bad)
    if pattern is not None:  # and Spark's parser agrees with the regex on every value
        values = spark.createDataFrame([(value,) for value in good + bad], "value string")
        parsed = values.select("value", F.try_to_timestamp("value", F.lit(pattern)).isNotNull().alias("ok"))
        assert {row.value: row.ok for row in parsed.collect()} == {value: value in good for value in good + bad}
    cfg = compose_config([] if pattern is None else [f'use_case.source.timestamp_format="{pattern}"'])
    checks = [
        entry["expect_column_values_to_match_regex"]
        for entry in OmegaConf.to_container(cfg.use_case.quality.source, resolve=True)
        if entry.get("expect_column_values_to_match_regex", {}).get("column") == "InvoiceDate"
    ]
    assert [check["regex"] for check in checks] == [timestamp_regex(pattern)]


@pytest.mark.parametrize(
    ("error", "meaning"),
    [
        (OSError(28, "No space left on device", "/data/x"), "the disk is full"),
        (
            RuntimeError(
                "Generic LocalFileSystem error: Unable to copy data to file: No space left on device (os error 28)"
            ),
            "the disk is full",
        ),
        (PermissionError(13, "Permission denied", "/mnt/ro"), "the storage may not be written"),
        (OSError(30, "Read-only file system", "/mnt/ro"), "the storage is read-only"),
    ],
)
def test_storage_faults_become_storage_errors_with_what_where_and_fix(error, meaning):
    from mlops.errors import storage_error

    wrapped = RuntimeError("the write failed")
    wrapped.__cause__ = error
    for raised in (error, wrapped):
        found = storage_error(raised)
        assert found is not None and found.exit_code == 9 and found.message.startswith(meaning)
        assert found.fix and found.where


SPARK_DISK_FULL = (
    "An error occurred while calling o769.parquet.\n: org.apache.spark.SparkException: [TASK_WRITE_FAILED] "
    "Task failed while writing rows to file:/data/root/_staging/ab12.\n\tat org.apache.spark...\n"
    "Caused by: java.io.IOException: No space left on device\n\tat java.base/java.io.FileOutputStream"
)
DELTA_READ_ONLY = "Failed to parse parquet: External: Generic LocalFileSystem error: Permission denied (os error 13)"


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError(SPARK_DISK_FULL), "java.io.IOException: No space left on device"),
        (RuntimeError(DELTA_READ_ONLY), "Permission denied (os error 13)"),
    ],
)
def test_a_storage_fault_deep_in_a_message_is_shown_by_its_own_line_and_the_table_it_hit(tmp_path, spark, error, shown):
    """Spark's and deltalake's first lines ("An error occurred while calling o769.parquet", "Failed
    to parse parquet") say nothing of the fault: the message shows the line that does, and a
    write names the table and its folder as where."""
    from mlops.errors import StorageError, storage_error
    from mlops.tables import DeltaPathTableStore, TableName

    found = storage_error(error)
    assert found is not None and shown in found.message and "o769" not in found.message
    store, name = DeltaPathTableStore(spark, tmp_path), TableName("local", "clv", "clv_transactions_de")

    def failing(*_):
        raise error

    store.overwrite_arrow = failing
    with pytest.raises(StorageError) as raised:
        store.overwrite(name, spark.range(3))
    assert raised.value.where == str(tmp_path / "local" / "clv" / "clv_transactions_de")
    assert f"writing table {name}" in raised.value.what and shown in raised.value.what


def test_other_failures_are_not_storage_errors():
    from mlops.errors import storage_error

    assert storage_error(ValueError("could not convert string to float")) is None
    assert storage_error(FileNotFoundError(2, "No such file or directory", "x")) is None
