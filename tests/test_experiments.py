"""Where MLflow experiments live: the stored name without /Workspace, and on Databricks the workspace
folder made before an experiment is created (the IDE path on a fresh workspace).

The Databricks side runs against tests/fakes/databricks_workspace.py, a fake of the SDK's
WorkspaceClient with the documented mkdirs behaviour and the SDK's own errors; MLflow is the real
local sqlite store.
"""

from __future__ import annotations

import pytest
from databricks.sdk.service.workspace import WorkspaceAPI
from omegaconf import open_dict

from mlops.config import compose_config
from mlops.errors import ConfigError
from mlops.experiments import (
    DatabricksExperimentFolders,
    experiment_folders,
    lookup_name,
    parent_folder,
)
from tests.conftest import local_config, mlflow_state_kept
from tests.fakes.databricks_workspace import FakeWorkspace, FakeWorkspaceClient, signature_of


def test_the_fake_mkdirs_has_the_sdks_signature():
    assert signature_of(FakeWorkspace.mkdirs) == signature_of(WorkspaceAPI.mkdirs)


@pytest.mark.parametrize(
    "name, stored",
    [
        ("/Workspace/Users/sp/.bundle/b/prod/clv_repurchase_de", "/Users/sp/.bundle/b/prod/clv_repurchase_de"),
        ("/Users/jdoe@example.com/x", "/Users/jdoe@example.com/x"),
        ("/WorkspaceExtra/x", "/WorkspaceExtra/x"),
        ("clv_repurchase_de", "clv_repurchase_de"),
    ],
)
def test_the_lookup_name_drops_only_a_workspace_prefix(name, stored):
    assert lookup_name(name) == stored


@pytest.mark.parametrize(
    "name, folder",
    [("/Shared/ac-mlops/dev/clv_repurchase_de", "/Shared/ac-mlops/dev"), ("/clv", None), ("clv_repurchase_de", None)],
)
def test_the_parent_folder_of_an_experiment(name, folder):
    assert parent_folder(name) == folder


def test_only_databricks_tracking_keeps_experiments_in_workspace_folders():
    assert isinstance(experiment_folders("databricks"), DatabricksExperimentFolders)
    with_profile = experiment_folders("databricks://ml-dev:secrets/prefix")
    assert isinstance(with_profile, DatabricksExperimentFolders) and with_profile.profile == "ml-dev"
    assert experiment_folders("sqlite:////tmp/mlflow.db") is None
    assert experiment_folders("http://127.0.0.1:5000") is None


def test_a_missing_folder_is_made_with_its_parents_and_an_existing_one_is_left_alone():
    client = FakeWorkspaceClient()
    folders = DatabricksExperimentFolders(client=client)
    folders.ensure("/Shared/ac-mlops/dev")
    assert {"/Shared/ac-mlops", "/Shared/ac-mlops/dev"} <= client.workspace.folders
    folders.ensure("/Shared/ac-mlops/dev")  # idempotent: the second call succeeds and changes nothing
    assert client.workspace.calls == [("mkdirs", "/Shared/ac-mlops/dev")] * 2


def test_a_folder_the_workspace_refuses_is_a_config_error_naming_it_and_the_fix():
    folders = DatabricksExperimentFolders(client=FakeWorkspaceClient(me="jdoe@example.com"))
    with pytest.raises(ConfigError) as raised:
        folders.ensure("/Users/someone-else@example.com/experiments")
    assert "/Users/someone-else@example.com/experiments" in raised.value.what
    assert "DIRECTORY_PROTECTED" in raised.value.what or "protected" in raised.value.what
    assert "databricks workspace mkdirs" in raised.value.fix


class RecordingFolders:
    def __init__(self) -> None:
        self.made: list[str] = []

    def ensure(self, folder: str) -> None:
        self.made.append(folder)


def test_the_ide_path_makes_the_dev_experiments_folder_before_creating_it():
    """env=dev outside a deploy: Databricks tracking, an experiment under /Shared/ac-mlops/dev/, a
    folder that a fresh workspace lacks and that mlops.experiments makes with the SDK."""
    cfg = compose_config(["env=dev"])
    assert isinstance(experiment_folders(cfg.env.mlflow.tracking_uri), DatabricksExperimentFolders)
    assert parent_folder(lookup_name(cfg.use_case.experiment)) == "/Shared/ac-mlops/dev"


def test_configure_mlflow_makes_the_folder_only_for_a_new_experiment_under_its_stored_name(tmp_path):
    from mlflow import MlflowClient

    from mlops.registry import configure_mlflow

    cfg = local_config(tmp_path)
    with open_dict(cfg):
        cfg.use_case.experiment = "/Workspace/Users/sp/.bundle/ac-mlops-pipeline/test/clv_repurchase_de"
    folders = RecordingFolders()
    with mlflow_state_kept():
        experiment_id = configure_mlflow(cfg, folders=folders)
        assert folders.made == ["/Users/sp/.bundle/ac-mlops-pipeline/test"]
        stored = MlflowClient().get_experiment(experiment_id).name
        assert stored == "/Users/sp/.bundle/ac-mlops-pipeline/test/clv_repurchase_de"
        # a second run finds it by the same name: no second experiment, no folder call
        assert configure_mlflow(cfg, folders=folders) == experiment_id
        assert folders.made == ["/Users/sp/.bundle/ac-mlops-pipeline/test"]


def test_a_local_store_needs_no_workspace_folder(tmp_path):
    from mlops.registry import configure_mlflow

    cfg = local_config(tmp_path)
    assert experiment_folders(cfg.env.mlflow.tracking_uri) is None
    with mlflow_state_kept():
        assert configure_mlflow(cfg)  # the plain name clv_repurchase_de, created with no folder
