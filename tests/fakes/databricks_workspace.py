"""A stand-in for the Databricks SDK's `WorkspaceClient` at the SDK boundary, for the one call the
pipeline makes (`workspace.mkdirs`), with the behaviour the SDK documents and real errors.

`WorkspaceAPI.mkdirs(path)` (databricks-sdk `service/workspace.py`): creates the folder and every
missing parent; an existing folder is a success; an object that is not a folder at any prefix of the
path is `RESOURCE_ALREADY_EXISTS`. Folders directly under /Users are the workspace's users' homes:
no one creates one by mkdirs (the workspace answers DIRECTORY_PROTECTED, "Folder Users is
protected", reported in amesar/mlflow-export-import#24). The fake starts with `/`, `/Users`,
`/Shared` and the caller's home, and records every call.
"""

from __future__ import annotations

import inspect
from typing import Any

from databricks.sdk.errors import PermissionDenied, ResourceAlreadyExists


class FakeWorkspace:
    def __init__(self, me: str) -> None:
        self.folders = {"/", "/Users", "/Shared", f"/Users/{me}"}
        self.files: set[str] = set()  # objects that are not folders (notebooks, files, experiments)
        self.calls: list[tuple[str, str]] = []

    def mkdirs(self, path: str):
        self.calls.append(("mkdirs", path))
        stored = path[len("/Workspace") :] if path.startswith("/Workspace/") else path
        parts = [part for part in stored.split("/") if part]
        prefixes = ["/" + "/".join(parts[: depth + 1]) for depth in range(len(parts))]
        for prefix in prefixes:
            if prefix in self.files:
                raise ResourceAlreadyExists(
                    f"{prefix} exists and is not a directory", error_code="RESOURCE_ALREADY_EXISTS"
                )
        for prefix in prefixes:
            if prefix not in self.folders and prefix.count("/") == 2 and prefix.startswith("/Users/"):
                raise PermissionDenied("Folder Users is protected", error_code="DIRECTORY_PROTECTED")
        self.folders.update(prefixes)


class FakeWorkspaceClient:
    """`databricks.sdk.WorkspaceClient` with the `workspace` service only."""

    def __init__(self, me: str = "jdoe@example.com") -> None:
        self.workspace = FakeWorkspace(me)


def signature_of(method: Any) -> str:
    """A method's parameters as `inspect` prints them: the tests hold the fake to the installed SDK's."""
    return str(inspect.signature(method))
