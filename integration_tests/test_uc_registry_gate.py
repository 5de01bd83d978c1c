"""Train -> evaluate -> promote on the DE sample with `registry_uri: databricks-uc` (a faithful fake).

The same stages as test_deployment_gate.py, unchanged, against the Unity Catalog registry path:
the fake refuses what Unity Catalog refuses (tests/fakes/uc_registry.py), so a pass shows that the
evaluate/promote lifecycle needs nothing UC lacks. Tracking stays the local sqlite store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from integration_tests.test_deployment_gate import context as gate_context
from integration_tests.test_deployment_gate import run
from mlops import registry
from mlops.errors import GateRejectedError
from mlops.registry import alias_version, model_versions
from mlops.runtime import RunContext
from tests.fakes.uc_registry import FakeUnityCatalogRegistryStore, uc_registry

pytestmark = pytest.mark.integration

CRIPPLED = {"_target_": "sklearn.dummy.DummyClassifier", "strategy": "prior"}
NAME = "local.clv.clv_repurchase_de"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uc_gate")


@pytest.fixture(scope="module")
def unity_catalog(root: Path) -> Iterator[FakeUnityCatalogRegistryStore]:
    with uc_registry(root / "unity_catalog") as store:
        yield store


def context(root: Path, spark, *overrides: str, estimator: dict | None = None) -> RunContext:
    """The deployment-gate scenario's context, with the registry in (fake) Unity Catalog."""
    return gate_context(root, spark, "env.mlflow.registry_uri=databricks-uc", *overrides, estimator=estimator)


def champion_version() -> str | None:
    version = alias_version(NAME, "champion")
    return None if version is None else str(version.version)


def versions() -> list[str]:
    return sorted((str(v.version) for v in model_versions(NAME)), key=int)


@pytest.fixture(scope="module")
def first(root, spark, unity_catalog):
    ctx = context(root, spark, "model=repurchase")
    return ctx, run(ctx, "extract", "features", "split", "train", "evaluate")


def test_a_good_first_model_becomes_champion_in_unity_catalog(first, unity_catalog):
    ctx, results = first
    assert mlflow.get_registry_uri() == "databricks-uc" and registry.registered_model_name(ctx.cfg) == NAME
    evaluation = results["evaluate"]
    assert evaluation.details["verdict"]["passed"] and evaluation.details["aliases_set"] == ["challenger", "champion"]
    assert champion_version() == evaluation.details["version"] == "1"
    # the new champion is no challenger: UC's alias API deleted that alias (MLOps Stacks' rule)
    assert evaluation.details["aliases"] == ["champion"] and evaluation.details["challenger_removed"]
    assert alias_version(NAME, "challenger") is None
    version = mlflow.MlflowClient().get_model_version(NAME, "1")
    assert version.tags["gate.verdict"] == "passed" and "## Gate" in version.description
    assert version.aliases == ["champion"]
    assert version.run_id == results["train"].run_id
    assert (unity_catalog.version_storage(NAME, 1) / "MLmodel").is_file()  # UC's own copy of the model


def test_rerunning_evaluate_adds_no_version(first, root, spark):
    again = run(context(root, spark, "model=repurchase"), "evaluate")["evaluate"]
    assert again.details["version"] == "1" and versions() == ["1"] and champion_version() == "1"


def test_a_crippled_model_is_rejected_and_the_champion_stays(first, root, spark):
    crippled = context(root, spark, "model=repurchase", estimator=CRIPPLED)
    run(crippled, "train")
    with pytest.raises(GateRejectedError, match="failed the gate"):
        run(crippled, "evaluate")
    assert versions() == ["1"] and champion_version() == "1"


def test_a_better_model_takes_over_and_promote_rolls_back(first, root, spark):
    better = context(root, spark, "model=repurchase", "seed=7", "model.gate.versus_champion.min=-1.0")
    results = run(better, "train", "evaluate")
    # registering the new run scans version 1 of another run: on UC without tags in search results
    assert results["evaluate"].details["version"] == "2" and versions() == ["1", "2"]
    assert champion_version() == "2" and alias_version(NAME, "challenger") is None
    assert results["evaluate"].details["aliases"] == ["champion"] and results["evaluate"].details["challenger_removed"]

    rollback = run(context(root, spark, "model=repurchase", "promote.version=1"), "promote")["promote"]
    assert rollback.details["previous"] == "2" and champion_version() == "1"
    assert not rollback.details["challenger_removed"] and alias_version(NAME, "challenger") is None


def test_promote_takes_challenger_off_the_version_it_makes_champion(first, root, spark):
    champion_before = champion_version()
    assert champion_before == "1" and "2" in versions()
    moved = run(context(root, spark, "model=repurchase", "promote.version=2", "promote.alias=challenger"), "promote")[
        "promote"
    ]
    assert not moved.details["challenger_removed"]
    assert str(alias_version(NAME, "challenger").version) == "2" and champion_version() == champion_before

    promoted = run(context(root, spark, "model=repurchase", "promote.version=2"), "promote")["promote"]
    assert promoted.details["challenger_removed"] and promoted.details["previous"] == champion_before
    assert champion_version() == "2" and alias_version(NAME, "challenger") is None
    assert mlflow.MlflowClient().get_model_version(NAME, "2").aliases == ["champion"]


def test_the_stages_asked_unity_catalog_only_what_it_supports(first, unity_catalog):
    calls = unity_catalog.calls
    assert not unity_catalog.calls_to("get_latest_versions")
    assert not unity_catalog.calls_to("transition_model_version_stage")
    assert {call.args["filter_string"] for call in unity_catalog.calls_to("search_model_versions")} == {
        f"name='{NAME}'"
    }
    # one version per run that passed (or was dry-run), whatever the re-runs
    assert len(unity_catalog.calls_to("create_model_version")) == len(versions()) == 2
    # the promoted version's challenger alias, and only that alias, went through UC's delete-alias API
    deleted = unity_catalog.calls_to("delete_registered_model_alias")
    assert deleted and {(call.args["name"], call.args["alias"]) for call in deleted} == {(NAME, "challenger")}
    # the champion was read from UC's copy when evaluate compared against it
    assert any(call.method == "get_model_version_download_uri" for call in calls)
