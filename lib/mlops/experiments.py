"""Where an MLflow experiment lives: the name its store knows it by, and on Databricks the workspace
folder it needs before it can be created."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mlops.errors import ConfigError

log = logging.getLogger(__name__)

_WORKSPACE_PREFIX = "/Workspace/"


def lookup_name(name: str) -> str:
    """The experiment name without a `/Workspace` prefix.

    The bundle names its experiments `${workspace.root_path}/<key>`, and the CLI expands the root path
    with that prefix; the workspace stores the name without it (the CLI strips it for the same reason,
    bundle/direct/dresources/experiment.go), and MLflow's lookup by name with the prefix finds nothing
    (mlflow/mlflow#11077). Plain names and local stores are left as they are.
    """
    return name[len("/Workspace") :] if name.startswith(_WORKSPACE_PREFIX) else name


def parent_folder(name: str) -> str | None:
    """The workspace folder an absolute experiment name lives in; None for a plain name or a top folder."""
    folder = name.rsplit("/", 1)[0] if name.startswith("/") else ""
    return folder or None


class ExperimentFolders(Protocol):
    """Makes the folder an experiment is created in; succeeds when it already exists."""

    def ensure(self, folder: str) -> None: ...


class DatabricksExperimentFolders:
    """Workspace folders through the Databricks SDK's Workspace API.

    `bundle deploy` creates the bundle's experiments in a folder that exists; a run outside a deploy
    (an IDE over Databricks Connect with `env=dev`, a script run by hand) names an experiment in a
    folder a fresh workspace lacks, and MLflow's create-experiment refuses a missing parent
    (RESOURCE_DOES_NOT_EXIST). `workspace.mkdirs` creates missing parents and succeeds on an existing
    folder (databricks-sdk, WorkspaceAPI.mkdirs), so calling it before every creation is safe.
    """

    def __init__(self, profile: str | None = None, client: Any | None = None) -> None:
        self.profile, self._client = profile, client

    @property
    def client(self) -> Any:
        if self._client is None:
            # the same unified authentication MLflow's `databricks` tracking and Databricks Connect use
            from databricks.sdk import WorkspaceClient

            self._client = WorkspaceClient(profile=self.profile) if self.profile else WorkspaceClient()
        return self._client

    def ensure(self, folder: str) -> None:
        from databricks.sdk.errors import DatabricksError

        try:
            self.client.workspace.mkdirs(folder)
        except DatabricksError as error:
            first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"the workspace folder {folder} for the MLflow experiment cannot be created: {first}",
                where="config key use_case.experiment",
                fix=f"create it once (`databricks workspace mkdirs {folder}`) or point use_case.experiment at a "
                "folder you may write, e.g. under /Users/<you>/",
            ) from None
        log.info("workspace folder %s is there for the MLflow experiment", folder)


def experiment_folders(tracking_uri: str) -> ExperimentFolders | None:
    """The folder maker of a tracking store that keeps experiments in workspace folders (Databricks:
    `databricks` or `databricks://<profile>[:<prefix>]`); None for stores that need none (sqlite, a
    local path, an MLflow server)."""
    if tracking_uri == "databricks":
        return DatabricksExperimentFolders()
    if tracking_uri.startswith("databricks://"):
        profile = tracking_uri.removeprefix("databricks://").split(":", 1)[0]
        return DatabricksExperimentFolders(profile=profile or None)
    return None
