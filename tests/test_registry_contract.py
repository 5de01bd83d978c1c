"""One registry contract, two worlds: the local sqlite registry and Unity Catalog (a faithful fake).

The contract tests call lib/mlops/registry.py exactly as the stages do, with the env config's
`registry_uri` either the local sqlite file or `databricks-uc` (tracking stays local sqlite). The
fake-only tests below show that the fake refuses what Unity Catalog refuses, so a pass in the UC
world means something.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import NOT_FOUND, PERMISSION_DENIED
from mlflow.types import ColSpec, Schema
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression

from mlops.errors import ConfigError
from mlops.registry import (
    SERVING_PACKAGES,
    alias_version,
    configure_mlflow,
    describe_version,
    load_sklearn_model,
    log_sklearn_model,
    model_versions,
    promote_to_champion,
    register_run_model,
    registered_model_name,
    set_alias,
    version_of_run,
)
from tests.conftest import local_config
from tests.fakes.uc_registry import FakeUnityCatalogRegistryStore, mlflow_uris_restored, uc_registry

SQLITE, UC = "sqlite", "databricks-uc (fake)"

FEATURES = pd.DataFrame(
    {
        "recency_days": [1.0, 5.0, 30.0, 90.0, 2.0, 60.0, 120.0, 10.0],
        "frequency": [9.0, 7.0, 3.0, 1.0, 8.0, 2.0, 1.0, 6.0],
    }
)
REPURCHASED = np.array([1, 1, 0, 0, 1, 0, 0, 1])


@dataclass
class World:
    kind: str
    cfg: DictConfig
    name: str
    uc: FakeUnityCatalogRegistryStore | None


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly migrated, empty MLflow database; copying it saves each test the migrations (~5 s a file)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("empty_mlflow_db") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts")).engine.dispose()
    return path


@contextlib.contextmanager
def world_of(kind: str, root: Path, empty_db: Path) -> Iterator[World]:
    overrides = ["env.mlflow.registry_uri=databricks-uc"] if kind == UC else []
    cfg = local_config(root / "storage", *overrides)
    tracking_db = Path(str(cfg.env.mlflow.tracking_uri).removeprefix("sqlite:///"))
    tracking_db.parent.mkdir(parents=True)
    shutil.copyfile(empty_db, tracking_db)
    if kind == UC:
        (root / "unity_catalog").mkdir()
        shutil.copyfile(empty_db, root / "unity_catalog" / FakeUnityCatalogRegistryStore.DB_FILE)
    registry = uc_registry(root / "unity_catalog") if kind == UC else mlflow_uris_restored()
    with registry as fake:
        configure_mlflow(cfg)
        assert mlflow.get_registry_uri() == str(cfg.env.mlflow.registry_uri)
        yield World(kind, cfg, registered_model_name(cfg), fake if kind == UC else None)


@pytest.fixture(params=[SQLITE, UC])
def world(request: pytest.FixtureRequest, tmp_path: Path, empty_mlflow_db: Path) -> Iterator[World]:
    with world_of(request.param, tmp_path, empty_mlflow_db) as each:
        yield each


@pytest.fixture
def uc(tmp_path: Path, empty_mlflow_db: Path) -> Iterator[World]:
    with world_of(UC, tmp_path, empty_mlflow_db) as only:
        yield only


@dataclass
class LoggedModel:
    run_id: str
    model_uri: str
    model: LogisticRegression


def train_and_log(labels: np.ndarray = REPURCHASED) -> LoggedModel:
    """A run with a small model logged the way the train stage logs it (skops, signature, example)."""
    model = LogisticRegression().fit(FEATURES, labels)
    with mlflow.start_run() as run:
        info = log_sklearn_model(model, input_example=FEATURES.head(3))
    return LoggedModel(run.info.run_id, info.model_uri, model)


def model_files(logged: LoggedModel) -> str:
    """Where the tracking store keeps the logged model's files (a file:// URI here)."""
    return mlflow.get_logged_model(logged.model_uri.removeprefix("models:/")).artifact_location


def register(world: World, logged: LoggedModel) -> ModelVersion:
    return register_run_model(world.name, logged.run_id, logged.model_uri)


# ---- the contract, in both worlds -------------------------------------------------------------


def test_the_registered_model_name_is_three_level_lowercase_in_every_world(world):
    assert world.name == "local.clv.clv_repurchase_de"
    assert (
        registered_model_name(local_config(Path("unused"), "use_case.registered_model=Local.CLV.Clv_DE"))
        == "local.clv.clv_de"
    )
    for bad in ("clv.clv_repurchase_de", "a.b.c.d", "local.clv.clv-repurchase"):
        with pytest.raises(ConfigError):
            registered_model_name(local_config(Path("unused"), f"use_case.registered_model={bad}"))


def test_registering_a_run_twice_gives_the_same_version(world):
    logged = train_and_log()
    first = register(world, logged)
    again = register(world, logged)
    assert str(first.version) == str(again.version) == "1"
    assert [str(v.version) for v in model_versions(world.name)] == ["1"]
    assert again.run_id == logged.run_id and again.tags["source_run_id"] == logged.run_id


def test_each_run_gets_its_own_version_and_is_found_by_its_run(world):
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    assert str(register(world, first).version) == "1"
    assert str(register(world, second).version) == "2"
    # the re-registration of the older run scans past version 2, whose run differs
    assert str(register(world, first).version) == "1"
    assert sorted(str(v.version) for v in model_versions(world.name)) == ["1", "2"]
    assert str(version_of_run(world.name, second.run_id).version) == "2"
    assert version_of_run(world.name, second.run_id).tags["source_run_id"] == second.run_id
    assert version_of_run(world.name, "0" * 32) is None


def test_a_version_without_a_run_id_is_found_by_its_source_run_id_tag(world):
    logged = train_and_log()
    MlflowClient().create_registered_model(world.name)
    MlflowClient().create_model_version(world.name, model_files(logged), tags={"source_run_id": logged.run_id})
    found = version_of_run(world.name, logged.run_id)
    assert str(found.version) == "1" and not found.run_id
    assert str(register(world, logged).version) == "1"


def test_a_missing_model_or_alias_is_none(world):
    assert alias_version(world.name, "champion") is None
    register(world, train_and_log())
    assert alias_version(world.name, "champion") is None


def test_champion_and_challenger_move_between_versions(world):
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    v1, v2 = register(world, first), register(world, second)
    for alias in ("challenger", "champion"):
        set_alias(world.name, alias, v1.version)
    set_alias(world.name, "challenger", v2.version)
    assert str(alias_version(world.name, "champion").version) == "1"
    assert alias_version(world.name, "challenger").run_id == second.run_id

    set_alias(world.name, "champion", v2.version)
    champion = alias_version(world.name, "champion")
    assert str(champion.version) == "2" and champion.run_id == second.run_id
    assert sorted(champion.aliases) == ["challenger", "champion"]
    assert MlflowClient().get_model_version(world.name, "1").aliases == []

    set_alias(world.name, "champion", 1)  # rollback takes an int version too
    assert str(alias_version(world.name, "champion").version) == "1"


def aliases_of(world: World, version: str | int) -> list[str]:
    return sorted(MlflowClient().get_model_version(world.name, str(version)).aliases)


def test_promoting_to_champion_takes_challenger_off_that_version(world):
    """MLOps Stacks' deployment rule: the version that becomes champion is no longer a challenger."""
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    v1, v2 = register(world, first), register(world, second)
    promote_to_champion(world.name, v1.version)
    set_alias(world.name, "challenger", v2.version)
    assert aliases_of(world, 2) == ["challenger"]

    assert promote_to_champion(world.name, v2.version) is True
    assert str(alias_version(world.name, "champion").version) == "2"
    assert alias_version(world.name, "challenger") is None
    assert aliases_of(world, 2) == ["champion"] and aliases_of(world, 1) == []


def test_promoting_to_champion_leaves_a_challenger_on_another_version(world):
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    v1, v2 = register(world, first), register(world, second)
    set_alias(world.name, "challenger", v2.version)

    assert promote_to_champion(world.name, int(v1.version)) is False  # rollback takes an int version too
    assert str(alias_version(world.name, "champion").version) == "1"
    assert str(alias_version(world.name, "challenger").version) == "2"
    assert aliases_of(world, 1) == ["champion"] and aliases_of(world, 2) == ["challenger"]


def test_promoting_to_champion_without_any_challenger(world):
    version = register(world, train_and_log())
    assert promote_to_champion(world.name, version.version) is False
    assert promote_to_champion(world.name, version.version) is False  # again: nothing changes, nothing fails
    assert aliases_of(world, 1) == ["champion"] and alias_version(world.name, "challenger") is None


def test_a_challenger_already_gone_on_delete_is_not_an_error_but_other_failures_are(world, monkeypatch):
    """Between reading `challenger` and deleting it another job may have removed it: not found is fine;
    a permission or server error must stop the promotion's caller."""
    version = register(world, train_and_log())
    set_alias(world.name, "challenger", version.version)

    def gone(self, name, alias):
        raise MlflowException(f"alias {alias} not found", error_code=NOT_FOUND)  # Databricks REST not-found code

    monkeypatch.setattr(MlflowClient, "delete_registered_model_alias", gone)
    assert promote_to_champion(world.name, version.version) is False
    assert str(alias_version(world.name, "champion").version) == "1"

    def denied(self, name, alias):
        raise MlflowException("User does not have MANAGE on the model", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(MlflowClient, "delete_registered_model_alias", denied)
    with pytest.raises(MlflowException, match="MANAGE"):
        promote_to_champion(world.name, version.version)


def test_describe_version_sets_the_description_and_tags(world):
    version = register(world, train_and_log())
    describe_version(world.name, version.version, "## Gate\npassed", {"gate.verdict": "passed", "gate.auc": "pass"})
    described = MlflowClient().get_model_version(world.name, version.version)
    assert described.description == "## Gate\npassed"
    assert {key: described.tags[key] for key in ("gate.verdict", "gate.auc")} == {
        "gate.verdict": "passed",
        "gate.auc": "pass",
    }


def test_a_logged_model_declares_its_pinned_serving_packages_without_inferring_them(world, monkeypatch):
    def infer(*args, **kwargs):
        raise AssertionError("requirements inference ran (a subprocess that imports the model)")

    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", infer)
    logged = train_and_log()
    requirements = (Path(urlparse(model_files(logged)).path) / "requirements.txt").read_text().split()
    expected = [f"{name}=={importlib.metadata.version(name)}" for name in ("mlflow", *SERVING_PACKAGES)]
    assert sorted(requirements) == sorted(expected)


def test_the_champion_loads_by_alias_and_a_version_by_number(world):
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    register(world, first)
    set_alias(world.name, "champion", register(world, second).version)
    champion = load_sklearn_model(f"models:/{world.name}@champion")
    np.testing.assert_allclose(champion.predict_proba(FEATURES), second.model.predict_proba(FEATURES))
    assert not np.allclose(champion.predict_proba(FEATURES), first.model.predict_proba(FEATURES))
    np.testing.assert_allclose(
        load_sklearn_model(f"models:/{world.name}/1").predict_proba(FEATURES), first.model.predict_proba(FEATURES)
    )


# ---- the fake has teeth: what Unity Catalog refuses, it refuses -----------------------------------


def test_uc_refuses_a_model_logged_without_a_signature(uc):
    model = LogisticRegression().fit(FEATURES, REPURCHASED)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops", skops_trusted_types=[])
    assert mlflow.models.get_model_info(info.model_uri).signature is None
    with pytest.raises(MlflowException, match="did not contain any signature metadata"):
        register_run_model(uc.name, run.info.run_id, info.model_uri)
    assert model_versions(uc.name) == []


def test_uc_refuses_a_signature_without_outputs(uc):
    model = LogisticRegression().fit(FEATURES, REPURCHASED)
    inputs_only = ModelSignature(inputs=Schema([ColSpec("double", "recency_days"), ColSpec("double", "frequency")]))
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="skops", skops_trusted_types=[], signature=inputs_only
        )
    with pytest.raises(MlflowException, match="signature that includes only inputs"):
        register_run_model(uc.name, run.info.run_id, info.model_uri)


@pytest.mark.parametrize("name", ["clv.clv_repurchase_de", "clv_repurchase_de", "local.clv.clv repurchase"])
def test_uc_refuses_a_name_that_is_not_catalog_schema_model(uc, name):
    logged = train_and_log()
    with pytest.raises(MlflowException, match="Unity Catalog"):
        register_run_model(name, logged.run_id, logged.model_uri)
    assert uc.uc.calls_to("create_model_version") == []


def test_uc_stores_names_in_lowercase(uc):
    logged = train_and_log()
    version = register_run_model("Local.CLV.Clv_Repurchase_DE", logged.run_id, logged.model_uri)
    assert version.name == uc.name == "local.clv.clv_repurchase_de"
    assert str(version_of_run(uc.name, logged.run_id).version) == "1"


def test_uc_has_no_stages(uc):
    version = register(uc, train_and_log())
    client = MlflowClient()
    with pytest.raises(MlflowException, match="'transition_model_version_stage' is unsupported"):
        client.transition_model_version_stage(uc.name, version.version, "Production")
    with pytest.raises(MlflowException, match="'get_latest_versions' is unsupported"):
        client.get_latest_versions(uc.name, stages=["Production"])
    with pytest.raises(MlflowException, match="unsupported for models in the Unity Catalog"):
        load_sklearn_model(f"models:/{uc.name}/Production")


@pytest.mark.parametrize(
    "search",
    [
        {"filter_string": "name='local.clv.clv_repurchase_de' and tags.source_run_id='x'"},
        {"filter_string": "tags.source_run_id='x'"},
        {"filter_string": "name LIKE 'local.clv.%'"},
        {"filter_string": "name != 'local.clv.other'"},
        {"filter_string": "name='local.clv.clv_repurchase_de'", "order_by": ["version_number DESC"]},
    ],
)
def test_uc_search_accepts_only_one_exact_name_or_run_id(uc, search):
    register(uc, train_and_log())
    with pytest.raises(MlflowException, match="(?i)unsupported"):
        MlflowClient().search_model_versions(**search)


def test_uc_search_results_carry_no_tags_or_aliases(uc):
    logged = train_and_log()
    set_alias(uc.name, "champion", register(uc, logged).version)
    (hit,) = MlflowClient().search_model_versions(f"run_id='{logged.run_id}'")
    assert hit.run_id == logged.run_id
    assert not isinstance(hit.tags, dict) and not isinstance(hit.aliases, list)
    with pytest.raises(MlflowException, match="'filter_string' is unsupported"):
        MlflowClient().search_registered_models(filter_string=f"name='{uc.name}'")


def test_model_versions_reads_every_page(uc):
    uc.uc.page_size = 1
    for labels in (REPURCHASED, 1 - REPURCHASED, REPURCHASED):
        register(uc, train_and_log(labels))
    assert sorted(str(v.version) for v in model_versions(uc.name)) == ["1", "2", "3"]
    assert len(MlflowClient().search_model_versions(f"name='{uc.name}'")) == 1


def test_uc_serves_its_own_copy_of_the_model_not_the_training_run(uc):
    logged = train_and_log()
    set_alias(uc.name, "champion", register(uc, logged).version)
    assert (uc.uc.version_storage(uc.name, 1) / "MLmodel").is_file()
    shutil.rmtree(urlparse(model_files(logged)).path)
    np.testing.assert_allclose(
        load_sklearn_model(f"models:/{uc.name}@champion").predict_proba(FEATURES), logged.model.predict_proba(FEATURES)
    )


def test_our_registry_calls_are_the_ones_uc_supports(uc):
    """What evaluate and promote ask of the registry, seen from the store: nothing UC would refuse."""
    first, second = train_and_log(), train_and_log(1 - REPURCHASED)
    for logged in (first, first, second):
        version = register(uc, logged)
        describe_version(uc.name, version.version, "card", {"gate.verdict": "passed"})
        alias_version(uc.name, "champion")
        set_alias(uc.name, "challenger", version.version)
        promote_to_champion(uc.name, version.version)
    load_sklearn_model(f"models:/{uc.name}@champion")

    store = uc.uc
    assert {call.method for call in store.calls} >= {
        "create_model_version",
        "search_model_versions",
        "set_registered_model_alias",
        "get_model_version_by_alias",
    }
    assert not store.calls_to("get_latest_versions") and not store.calls_to("transition_model_version_stage")
    assert {call.args["filter_string"] for call in store.calls_to("search_model_versions")} == {f"name='{uc.name}'"}
    assert all(call.args["order_by"] is None for call in store.calls_to("search_model_versions"))
    # one version per run, created from the logged model's files with the run recorded: MLflow's client
    # turned the `models:/<model_id>` URI into the artifact location before it reached UC
    created = store.calls_to("create_model_version")
    assert [call.args["run_id"] for call in created] == [first.run_id, second.run_id]
    assert all(call.args["model_id"] is None and not call.args["source"].startswith("models:/") for call in created)
    assert [call.args["alias"] for call in store.calls_to("set_registered_model_alias")] == [
        "challenger",
        "champion",
    ] * 3
    # the promoted version's challenger alias is deleted through UC's own alias API, each time
    assert [(call.args["name"], call.args["alias"]) for call in store.calls_to("delete_registered_model_alias")] == [
        (uc.name, "challenger")
    ] * 3


def test_a_registry_failure_is_not_mistaken_for_a_missing_champion(world, monkeypatch):
    """Only 'not found' means no champion; a permission or server error must stop the stage, or
    evaluate would promote the candidate over a champion it could not see."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def denied(self, name, alias):
        raise MlflowException("User does not have EXECUTE on the model", error_code="PERMISSION_DENIED")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", denied)
    with pytest.raises(MlflowException, match="EXECUTE"):
        alias_version("local.clv.clv_repurchase_de", "champion")


def test_a_relative_storage_root_from_the_command_line_gets_an_absolute_artifact_location(tmp_path, monkeypatch):
    # `env.storage_root=runs/x` on the command line bypasses the ${abspath:} of the env file
    monkeypatch.chdir(tmp_path)
    cfg = local_config(Path("relative-root"), "use_case.experiment=/relative-root-experiment")
    with mlflow_uris_restored():
        experiment_id = configure_mlflow(cfg)
        location = mlflow.get_experiment(experiment_id).artifact_location
    assert urlparse(location).scheme == "file"
    assert (
        Path(urlparse(location).path)
        == tmp_path / "relative-root" / "mlflow" / "artifacts" / "relative-root-experiment"
    )
