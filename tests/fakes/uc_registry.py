"""A stand-in for the Unity Catalog model registry (`databricks-uc`) at MLflow's registry-store boundary.

`databricks-uc` cannot be reached from a laptop or CI, yet the pipeline's registry code must obey
Unity Catalog's rules. MLflow picks a registry store by URI scheme
(`mlflow.tracking._model_registry.utils._get_store_registry`); `uc_registry()` registers this fake
for the `databricks-uc` scheme, so `mlflow.register_model`, `MlflowClient` and
`models:/<name>@<alias>` loads run MLflow's own client-side UC code paths (e.g. the client turning a
`models:/<model_id>` source into the logged model's artifact location before it reaches the store)
and then land here instead of on the REST API.

Storage is real: MLflow's `SqlAlchemyStore` on a temporary sqlite file. On top of it the fake
enforces where Unity Catalog differs from the workspace/sqlite registry. Each rule names its source;
`MLflow` means the installed mlflow 3.17 package, `docs` means
https://docs.databricks.com/aws/en/machine-learning/manage-model-lifecycle/ ("Limitations" and
"Train and register Unity Catalog-compatible models") or
https://docs.databricks.com/aws/en/data-governance/unity-catalog/requirements ("Securable object
naming requirements"):

1. Names are three-level `catalog.schema.model`; each part at most 255 characters without period,
   space, slash, or control characters; stored in lowercase (MLflow
   `utils/_unity_catalog_utils.py::split_uc_model_name`; docs naming requirements).
2. A version's model must carry a signature with inputs and outputs; MLflow's UC store checks this
   client-side and refuses with its own message (MLflow
   `store/_unity_catalog/registry/rest_store.py::UcModelRegistryStore._validate_model_signature`;
   docs "New ML model versions in UC must have a model signature"). The fake calls that method.
3. Registration copies the model files into registry-managed storage; loads by `models:/` read that
   copy (`get_model_version_download_uri`), not the training run's artifacts (MLflow rest_store.py
   `_create_and_finalize_model_version`, `store/artifact/unity_catalog_models_artifact_repo.py`).
4. No stages: `transition_model_version_stage` and `get_latest_versions` raise MLflow's own UC
   errors (MLflow rest_store.py; docs "Stages are not supported").
5. `search_model_versions`: one exact-equality condition on `name` or `run_id`, no `order_by`, no tag
   filters, no LIKE/ILIKE/!=, and results without tags or aliases (`ModelVersionSearch`, whose
   `.tags` is not a dict) (MLflow rest_store.py `search_model_versions` and
   `utils/_unity_catalog_utils.py::model_version_search_from_uc_proto`; docs "Limitations").
6. `search_registered_models`: no `filter_string`, no `order_by`, results without tags or aliases
   (MLflow rest_store.py `search_registered_models`; docs "Limitations").
7. `run_link` is refused on version creation (MLflow rest_store.py `_require_arg_unspecified`), and
   webhooks are unsupported (docs "Webhooks are not supported").

`page_size` is a knob of the fake, not a UC rule: a server may return fewer results per page than
asked for, and callers that need every version must follow `PagedList.token`.

Every public call is recorded (outermost call only) in `calls` so tests can assert what our code
asked of the registry.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_search import ModelVersionSearch
from mlflow.entities.model_registry.registered_model_search import RegisteredModelSearch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store._unity_catalog.registry.rest_store import (
    UcModelRegistryStore,
    _require_arg_unspecified,
    get_feature_dependencies,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry import SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils._unity_catalog_utils import split_uc_model_name

UC_SCHEME = "databricks-uc"
MAX_NAME_PART_LENGTH = 255
# docs, "Securable object naming requirements": no period, space, forward slash, ASCII control
# characters (00-1F) or DEL (7F). The period is what splits the levels, so it is checked by level.
_FORBIDDEN_IN_NAME = re.compile(r"[ /\x00-\x1f\x7f]")
# the only search_model_versions filter UC accepts: one exact match on name or run_id
_SUPPORTED_VERSION_FILTER = re.compile(r"\s*(name|run_id)\s*=\s*'([^']*)'\s*")


@dataclass(frozen=True)
class Call:
    """One call our code made on the registry store, with its arguments by parameter name."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)


def _recorded(method: Callable) -> Callable:
    """Record the outermost call; SqlAlchemyStore calls its own public methods internally."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: FakeUnityCatalogRegistryStore, *args: Any, **kwargs: Any) -> Any:
        outermost = not getattr(self._depth, "value", 0)
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.calls.append(Call(method.__name__, {k: v for k, v in bound.arguments.items() if k != "self"}))
        self._depth.value = getattr(self._depth, "value", 0) + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._depth.value -= 1

    return wrapper


def _unsupported(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def uc_model_name(name: str) -> str:
    """The name as Unity Catalog stores it, or MLflow's UC error for a name UC would refuse."""
    catalog, schema, model = split_uc_model_name(str(name))
    for part in (catalog, schema, model):
        if len(part) > MAX_NAME_PART_LENGTH or _FORBIDDEN_IN_NAME.search(part):
            raise _unsupported(
                f"Invalid Unity Catalog name part {part!r} in '{name}': at most "
                f"{MAX_NAME_PART_LENGTH} characters, without space, '/', or control characters."
            )
    return f"{catalog}.{schema}.{model}".lower()


class FakeUnityCatalogRegistryStore(SqlAlchemyStore):
    """MLflow's sqlite registry store with Unity Catalog's rules (see the module docstring)."""

    DB_FILE = "uc_registry.db"  # under root; an existing MLflow database there is used as it is

    def __init__(self, root: Path, tracking_uri: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(f"sqlite:///{root / self.DB_FILE}")
        self.storage_root = root / "managed_storage"
        self.tracking_uri = tracking_uri
        self.calls: list[Call] = []
        self.page_size: int | None = None
        self._depth = threading.local()

    # what tests ask of the fake
    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def version_storage(self, name: str, version: str | int) -> Path:
        """Where UC keeps this version's files: its own copy, independent of the training run."""
        catalog, schema, model = uc_model_name(name).split(".")
        return self.storage_root / catalog / schema / model / str(version)

    # registered models
    @_recorded
    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        return super().create_registered_model(uc_model_name(name), tags, description, deployment_job_id)

    @_recorded
    def update_registered_model(self, name, description, deployment_job_id=None):
        return super().update_registered_model(uc_model_name(name), description, deployment_job_id)

    @_recorded
    def rename_registered_model(self, name, new_name):
        # UC takes the new *model* name only; it stays in the same catalog and schema (docs, "Rename a model")
        catalog, schema, _ = uc_model_name(name).split(".")
        return super().rename_registered_model(uc_model_name(name), uc_model_name(f"{catalog}.{schema}.{new_name}"))

    @_recorded
    def delete_registered_model(self, name):
        return super().delete_registered_model(uc_model_name(name))

    @_recorded
    def get_registered_model(self, name):
        return super().get_registered_model(uc_model_name(name))

    @_recorded
    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        _require_arg_unspecified("filter_string", filter_string)
        _require_arg_unspecified("order_by", order_by)
        page = super().search_registered_models(None, max_results or 100, None, page_token)
        return PagedList(
            [
                RegisteredModelSearch(
                    name=m.name,
                    creation_timestamp=m.creation_timestamp,
                    last_updated_timestamp=m.last_updated_timestamp,
                    description=m.description,
                )
                for m in page
            ],
            page.token,
        )

    @_recorded
    def get_latest_versions(self, name, stages=None):
        UcModelRegistryStore.get_latest_versions(self, name, stages)  # always raises, as on UC

    @_recorded
    def set_registered_model_tag(self, name, tag):
        return super().set_registered_model_tag(uc_model_name(name), tag)

    @_recorded
    def delete_registered_model_tag(self, name, key):
        return super().delete_registered_model_tag(uc_model_name(name), key)

    # model versions
    @_recorded
    def create_model_version(
        self,
        name,
        source,
        run_id=None,
        tags=None,
        run_link=None,
        description=None,
        local_model_path=None,
        model_id=None,
    ):
        _require_arg_unspecified(arg_name="run_link", arg_value=run_link)
        name = uc_model_name(name)
        with self._model_dir(source, local_model_path) as model_dir:
            # MLflow's UC store does these checks on the client before it calls the server
            UcModelRegistryStore._validate_model_signature(self, model_dir)
            get_feature_dependencies(model_dir)
            version = super().create_model_version(name, source, run_id, tags, None, description, model_id=model_id)
            target = self.version_storage(name, version.version)
            shutil.copytree(model_dir, target, dirs_exist_ok=True)
        return version

    @contextlib.contextmanager
    def _model_dir(self, source: str, local_model_path: str | None) -> Iterator[str]:
        if local_model_path is not None:
            yield local_model_path
            return
        import mlflow

        with tempfile.TemporaryDirectory(prefix="uc-fake-download-") as scratch:
            try:
                yield mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=scratch, tracking_uri=self.tracking_uri
                )
            except MlflowException:
                raise
            except Exception as exc:  # the message UC's store gives when it cannot read the source
                raise MlflowException(
                    f"Unable to download model artifacts from source artifact location "
                    f"'{source}' in order to upload them to Unity Catalog. {exc}"
                ) from exc

    @_recorded
    def update_model_version(self, name, version, description=None):
        return super().update_model_version(uc_model_name(name), version, description)

    @_recorded
    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        UcModelRegistryStore.transition_model_version_stage(self, name, version, stage, archive_existing_versions)

    @_recorded
    def delete_model_version(self, name, version):
        super().delete_model_version(uc_model_name(name), version)
        shutil.rmtree(self.version_storage(name, version), ignore_errors=True)

    @_recorded
    def get_model_version(self, name, version):
        return super().get_model_version(uc_model_name(name), version)

    @_recorded
    def get_model_version_download_uri(self, name, version):
        self.get_model_version(name, version)  # an unknown version is an error, as on UC
        return self.version_storage(name, version).as_uri()

    @_recorded
    def search_model_versions(
        self, filter_string=None, max_results=SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT, order_by=None, page_token=None
    ):
        _require_arg_unspecified(arg_name="order_by", arg_value=order_by)
        match = _SUPPORTED_VERSION_FILTER.fullmatch(filter_string or "")
        if match is None:
            raise _unsupported(
                f"Unsupported filter for model versions in Unity Catalog: {filter_string!r}. "
                "Only one exact match on name or run_id is supported, e.g. "
                "\"name = 'catalog.schema.model'\"; tag filters and LIKE, ILIKE, != are not."
            )
        key, value = match.groups()
        if key == "name":
            value = uc_model_name(value)
        size = max_results if self.page_size is None else min(max_results, self.page_size)
        page = super().search_model_versions(f"{key} = '{value}'", size, None, page_token)
        return PagedList([_search_result(version) for version in page], page.token)

    @_recorded
    def set_model_version_tag(self, name, version, tag):
        return super().set_model_version_tag(uc_model_name(name), version, tag)

    @_recorded
    def delete_model_version_tag(self, name, version, key):
        return super().delete_model_version_tag(uc_model_name(name), version, key)

    # aliases
    @_recorded
    def set_registered_model_alias(self, name, alias, version):
        return super().set_registered_model_alias(uc_model_name(name), alias, version)

    @_recorded
    def delete_registered_model_alias(self, name, alias):
        return super().delete_registered_model_alias(uc_model_name(name), alias)

    @_recorded
    def get_model_version_by_alias(self, name, alias):
        return super().get_model_version_by_alias(uc_model_name(name), alias)

    def _await_model_version_creation(self, mv, await_creation_for):
        """UC versions are READY once created (MLflow rest_store.py `_await_model_version_creation`)."""

    # webhooks (docs: "Webhooks are not supported for models in Unity Catalog")
    def create_webhook(self, *args: Any, **kwargs: Any) -> Any:
        raise _unsupported("Webhooks are not supported for models in Unity Catalog.")

    get_webhook = list_webhooks = list_webhooks_by_event = update_webhook = delete_webhook = create_webhook


def _search_result(version: ModelVersion) -> ModelVersionSearch:
    """A search hit as MLflow's UC store builds it: no tags, no aliases."""
    return ModelVersionSearch(
        name=version.name,
        version=version.version,
        creation_timestamp=version.creation_timestamp,
        last_updated_timestamp=version.last_updated_timestamp,
        description=version.description,
        user_id=version.user_id,
        source=version.source,
        run_id=version.run_id,
        status=version.status,
        status_message=version.status_message,
    )


def _read_from_managed_storage(repo: Any, lineage_header_info: Any = None) -> Any:
    """Replaces only the credential exchange of `UnityCatalogModelsArtifactRepository._get_artifact_repo`.

    The real method asks the workspace for a scoped token and then reads `_get_blob_storage_path()`
    (the registry's `get_model_version_download_uri`); here the same path is read directly.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(repo._get_blob_storage_path())


@contextlib.contextmanager
def uc_registry(root: Path) -> Iterator[FakeUnityCatalogRegistryStore]:
    """Serve `databricks-uc` from a fake store under `root`; restore MLflow's registry on exit.

    The same store instance answers every client for as long as the context is open, so tests see
    what earlier calls did, whatever tracking URI the client was built with.
    """
    from mlflow.store.artifact.unity_catalog_models_artifact_repo import UnityCatalogModelsArtifactRepository
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry

    store = FakeUnityCatalogRegistryStore(root)

    def build(store_uri: str, tracking_uri: str | None = None) -> FakeUnityCatalogRegistryStore:
        store.tracking_uri = tracking_uri
        return store

    with mlflow_uris_restored() as patch:
        patch.setitem(registry_utils._get_store_registry()._registry, UC_SCHEME, build)
        patch.setattr(UnityCatalogModelsArtifactRepository, "_get_artifact_repo", _read_from_managed_storage)
        # stores are cached per (registry URI, tracking URI): drop any real UC store built earlier
        ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()
        try:
            yield store
        finally:
            ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()
            store.engine.dispose()


@contextlib.contextmanager
def mlflow_uris_restored() -> Iterator[pytest.MonkeyPatch]:
    """Undo on exit what `mlflow.set_registry_uri` / `set_tracking_uri` (e.g. in configure_mlflow) changed.

    MLflow keeps both URIs in module globals and in environment variables (which subprocesses
    inherit), so a test that points the registry at `databricks-uc` would otherwise leak it.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    patch = pytest.MonkeyPatch()
    patch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    patch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    for variable in ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI"):
        if variable in os.environ:
            patch.setenv(variable, os.environ[variable])
        else:
            patch.delenv(variable, raising=False)
    try:
        yield patch
    finally:
        patch.undo()


@pytest.fixture
def fake_uc_registry(tmp_path: Path) -> Iterator[FakeUnityCatalogRegistryStore]:
    """The fake UC registry for one test; MLflow's own `databricks-uc` store is back afterwards."""
    with uc_registry(tmp_path / "unity_catalog") as store:
        yield store
