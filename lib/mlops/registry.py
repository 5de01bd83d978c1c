"""MLflow per env: tracking and registry URIs, experiments, and how models are saved and loaded."""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mlops.errors import ConfigError
from mlops.experiments import ExperimentFolders, experiment_folders, lookup_name, parent_folder

log = logging.getLogger(__name__)

# skops refuses to load types it was not told to trust. We trust scikit-learn, numpy and scipy
# internals only, so a model that smuggles in any other type fails at save time, not in serving.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")

# The artifact path every stage logs its model under (`log_sklearn_model`), the only one `runs:/` may name.
MODEL_ARTIFACT_PATH = "model"


@dataclass(frozen=True)
class ConfiguredRegistry:
    """What `configure_mlflow` pointed this process at: the only experiment and model loads may come from."""

    experiment_id: str
    registered_model: str  # use_case.registered_model as configured; normalised when checked


# MLflow's tracking URI, registry URI and active experiment are process-wide; the allow-list for
# model loads follows them, set by the same call (configure_mlflow) that sets them.
_configured: ConfiguredRegistry | None = None


def _ensure_sqlite_dir(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def configure_mlflow(cfg: DictConfig, folders: ExperimentFolders | None = None) -> str:
    """Point MLflow at this env's tracking and registry stores; return the experiment id.

    A missing experiment is created, after its workspace folder where the store keeps experiments in
    folders (`folders`, by default the tracking store's own: mlops.experiments).
    """
    import mlflow

    settings = cfg.env.mlflow
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in job logs
    _ensure_sqlite_dir(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    name = lookup_name(str(cfg.use_case.experiment))
    try:
        experiment = mlflow.get_experiment_by_name(name)
    except Exception as exc:  # the first call that touches the store: a damaged database shows here
        from mlops.errors import StorageError

        first = str(exc).strip().splitlines()[0][:300]
        raise StorageError(
            f"the MLflow tracking store cannot be read: {first}",
            where=settings.tracking_uri.removeprefix("sqlite:///"),
            fix="restore the database from a backup, or point env.mlflow.tracking_uri at a working "
            "store; no run was started and no alias moved",
        ) from None
    if experiment is None:
        folders = folders if folders is not None else experiment_folders(str(settings.tracking_uri))
        folder = parent_folder(name)
        if folders is not None and folder is not None:
            folders.ensure(folder)
        artifact_location = None
        if settings.artifact_root:
            # resolved: a storage root given relative on the command line skips the env's ${abspath:}
            artifact_dir = (Path(settings.artifact_root) / name.strip("/")).resolve()
            artifact_dir.mkdir(parents=True, exist_ok=True)
            artifact_location = artifact_dir.as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
        log.info("created MLflow experiment %s (%s)", name, experiment_id)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    global _configured
    _configured = ConfiguredRegistry(str(experiment_id), str(cfg.use_case.registered_model))
    return experiment_id


def fail_orphaned_runs(cfg: DictConfig, stage: str) -> list[str]:
    """Mark as FAILED this stage's runs of this model and country that are still RUNNING; return their ids.

    A process that is killed never ends its MLflow run, which then shows as RUNNING for good and
    reads as a stage still at work. Call it before the stage starts its own run. No live run of the
    same stage, model and country can exist then: locally every stage runs under the run lock of
    its use case and country (`cli.run_lock`); on Databricks the one job that runs this stage has
    max_concurrent_runs=1 with a queue. That guarantee is per job, so the search is per stage:
    a model's training job (train, evaluate) and its scoring job (monitor) may run at the same
    time, and neither may end the other's run.
    """
    import mlflow
    from mlflow import MlflowClient

    if _configured is None:
        raise ConfigError(
            "no MLflow experiment is configured in this process",
            where="mlops.registry",
            fix="call configure_mlflow(cfg) first (every stage does)",
        )
    tags = {"stage": stage, "model": str(cfg.model.name), "country": str(cfg.country.code)}
    if any("'" in value for value in tags.values()):
        raise ConfigError(
            f"a quote in {tags} would break the MLflow search", where="model.name / country.code", fix="use plain names"
        )
    query = "attributes.status = 'RUNNING' and " + " and ".join(
        f"tags.{key} = '{value}'" for key, value in tags.items()
    )
    client = MlflowClient()
    active = mlflow.active_run()
    orphans: list[str] = []
    page_token = None
    while True:
        page = client.search_runs([_configured.experiment_id], query, page_token=page_token)
        orphans += [run.info.run_id for run in page if active is None or run.info.run_id != active.info.run_id]
        page_token = page.token
        if not page_token:
            break
    for run_id in orphans:
        client.set_terminated(run_id, "FAILED")
    if orphans:
        log.warning(
            "marked %d %s run(s) of %s %s FAILED: %s; they were still RUNNING, so their process ended "
            "without finishing them (killed?)",
            len(orphans),
            stage,
            cfg.model.name,
            cfg.country.code,
            ", ".join(orphans),
        )
    return orphans


def skops_trusted_types(model: Any) -> list[str]:
    """The non-default types a skops load of this model needs, checked against our allow-list."""
    import skops.io

    needed = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [name for name in needed if not name.startswith(TRUSTED_MODULE_PREFIXES)]
    if foreign:
        raise ConfigError(
            f"the estimator contains types outside scikit-learn/numpy/scipy: {foreign}",
            where="model.estimator",
            fix="use a scikit-learn estimator, or extend TRUSTED_MODULE_PREFIXES deliberately",
        )
    return needed


# What loading and serving a logged model needs (MLflow adds itself), pinned to this environment.
SERVING_PACKAGES = ("numpy", "pandas", "scikit-learn", "scipy", "skops")


def serving_requirements() -> list[str]:
    """The pip requirements a logged model declares.

    Declared, not inferred: MLflow's inference re-imports the model in a subprocess (~4.5 s of
    every training run) and records whatever that process happens to import (pytest, under tests).
    """
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in SERVING_PACKAGES]


def log_sklearn_model(model: Any, *, input_example: Any, predict_fn: str = "predict_proba") -> Any:
    """Log in skops format (safe to load) with signature and example; returns the ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, getattr(model, predict_fn)(input_example))
    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=skops_trusted_types(model),
        signature=signature,
        input_example=input_example,
        pyfunc_predict_fn=predict_fn,
        pip_requirements=serving_requirements(),
    )


@contextlib.contextmanager
def _trusted_model_loading() -> Iterator[None]:
    # MLflow >= 3.17 refuses every sklearn model load unless this is set. We load only models
    # that our own stages logged to the configured registry, so we allow it for that call only.
    previous = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)
        else:
            os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = previous


def _refuse(model_uri: str, why: str) -> ConfigError:
    return ConfigError(
        f"refusing to load model {model_uri!r}: {why}",
        where="model URI (evaluation.run_id, the training run's model_uri tag, or a registry alias)",
        fix="load only models:/<use_case.registered_model>/<version> or @<alias>, or the model a "
        "training run of the configured experiment logged (runs:/<run id>/model)",
    )


def check_model_uri(model_uri: str, *, run_id: str | None = None) -> None:
    """Refuse, before anything is deserialised, a model from outside the configured registry and experiment.

    Loading runs code paths that trust the files (MLflow needs MLFLOW_ALLOW_PICKLE_DESERIALIZATION
    for sklearn), so a URI that reached us through config or a run tag must name one of ours:
    `models:/<configured registered model>/<version>` or `@<alias>`; `runs:/<run id>/model` of a
    run in the configured experiment; or `models:/<model id>`, the logged model a training run of
    that experiment made (what `log_sklearn_model` returns and train tags as `model_uri`). A URI
    naming another registry or workspace (`models://<profile>@...`), a path or a cloud URI is refused.
    With `run_id`, the model must also be that run's (a registered version created from it), so
    its target and feature list, read from the run, describe the model that is loaded.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if _configured is None:
        raise ConfigError(
            f"no MLflow registry is configured in this process to load {model_uri!r} from",
            where="mlops.registry",
            fix="call configure_mlflow(cfg) first (every stage does)",
        )
    parsed = urllib.parse.urlparse(model_uri)
    if parsed.scheme not in ("models", "runs"):
        raise _refuse(model_uri, "only models:/ and runs:/ URIs are loaded")
    if parsed.netloc or parsed.params or parsed.query or parsed.fragment:
        raise _refuse(model_uri, "the URI names its own registry, workspace or options")
    parts = parsed.path.lstrip("/").split("/")
    try:
        if parsed.scheme == "runs":
            if len(parts) != 2 or parts[1] != MODEL_ARTIFACT_PATH or (run_id is not None and parts[0] != run_id):
                raise _refuse(model_uri, f"runs:/ loads only runs:/{run_id or '<run id>'}/{MODEL_ARTIFACT_PATH}")
            experiment_id = mlflow.get_run(parts[0]).info.experiment_id
            if str(experiment_id) != _configured.experiment_id:
                raise _refuse(
                    model_uri,
                    f"run {parts[0]} belongs to experiment {experiment_id}, not the configured "
                    f"{_configured.experiment_id}",
                )
            return
        if len(parts) == 1 and "@" not in parts[0]:  # models:/<model id>: a logged model, not a registered one
            logged = mlflow.get_logged_model(parts[0])
            if str(logged.experiment_id) != _configured.experiment_id:
                raise _refuse(
                    model_uri,
                    f"logged model {parts[0]} belongs to experiment {logged.experiment_id}, "
                    f"not the configured {_configured.experiment_id}",
                )
            if run_id is not None and logged.source_run_id != run_id:
                raise _refuse(model_uri, f"logged model {parts[0]} comes from run {logged.source_run_id}, not {run_id}")
            return
        name, version, alias = _registered_parts(model_uri, parts)
        configured = _normalised_model_name(_configured.registered_model)
        if name != configured:
            raise _refuse(model_uri, f"{name!r} is not the configured registered model {configured!r}")
        if run_id is None:
            return
        if alias is None and not str(version).isdigit():
            raise _refuse(model_uri, "a model paired with its run is loaded by version number or alias")
        client = MlflowClient()
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias is not None
            else client.get_model_version(name, str(version))
        )
        if run_id not in (found.run_id, (found.tags or {}).get("source_run_id")):
            raise _refuse(model_uri, f"version {found.version} was registered from run {found.run_id}, not {run_id}")
    except MlflowException as error:
        if error.error_code not in _NOT_FOUND_CODES:
            raise  # permission, network, server: not a verdict on the URI
        raise _refuse(model_uri, f"it is not in the configured tracking store or registry ({error.message})") from error


def _registered_parts(model_uri: str, parts: list[str]) -> tuple[str, str | None, str | None]:
    """(name, version or stage, alias) of models:/<name>/<version> or models:/<name>@<alias>."""
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[0], parts[1], None
    if len(parts) == 1:
        name, _, alias = parts[0].rpartition("@")
        if name and alias:
            return name, None, alias
    raise _refuse(model_uri, "not models:/<name>/<version> or models:/<name>@<alias>")


def load_sklearn_model(model_uri: str) -> Any:
    """Load a model we logged, e.g. `models:/<name>@champion`; the registry of the env resolves the URI.

    Refused with a ConfigError unless `check_model_uri` finds it in the configured registry or experiment.
    """
    import mlflow

    check_model_uri(model_uri)
    with _trusted_model_loading():
        return mlflow.sklearn.load_model(model_uri)


def registered_model_name(cfg: DictConfig) -> str:
    """catalog.schema.model, each part a plain identifier, in lowercase: the Unity Catalog shape, also locally.

    Unity Catalog stores every name in lowercase; the sqlite registry is case-sensitive. Lowercasing
    here gives the same name, and the same `version.name`, in both worlds.
    """
    return _normalised_model_name(str(cfg.use_case.registered_model))


def _normalised_model_name(configured: str) -> str:
    from mlops.tables import TableName

    parts = configured.split(".")
    if len(parts) != 3:
        raise ConfigError(
            f"registered model name {configured!r} is not catalog.schema.name",
            where="use_case.registered_model",
            fix="e.g. dev.clv.clv_repurchase_de",
        )
    return str(TableName.of(*parts)).lower()


def model_versions(name: str) -> list[Any]:
    """Every version of the model, as search results: version, run_id, source and status only.

    The filter is the one Unity Catalog accepts (one exact match on the name); its results carry no
    tags or aliases (`ModelVersionSearch`), so read those through `get_model_version`. Every page
    is read: a registry may return fewer versions per page than asked for.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    versions: list[Any] = []
    page_token = None
    while True:
        page = client.search_model_versions(f"name='{name}'", page_token=page_token)
        versions.extend(page)
        page_token = page.token
        if not page_token:
            return versions


def version_of_run(name: str, run_id: str) -> Any | None:
    """The version already registered from this run, so re-running evaluate adds none.

    Matched on `run_id`, which search results carry in both registries. The `source_run_id` tag is
    read only for versions without a run id, through `get_model_version`: Unity Catalog's search
    results have no tags. Returns the full version (tags, aliases), as `register_model` does.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    matches = [
        v
        for v in model_versions(name)
        if v.run_id == run_id
        or (not v.run_id and client.get_model_version(name, v.version).tags.get("source_run_id") == run_id)
    ]
    if not matches:
        return None
    return client.get_model_version(name, min(matches, key=lambda v: int(v.version)).version)


def register_run_model(name: str, run_id: str, model_uri: str) -> Any:
    """Register the run's model once: a re-run of evaluate returns the version it registered before.

    `model_uri` must be that run's model in the configured experiment (`check_model_uri`): a
    registered version is later loaded by name alone, so nothing foreign may become one.
    """
    import mlflow

    check_model_uri(model_uri, run_id=run_id)
    existing = version_of_run(name, run_id)
    if existing is not None:
        log.info("run %s is already %s version %s", run_id, name, existing.version)
        return existing
    version = mlflow.register_model(model_uri, name, tags={"source_run_id": run_id})
    log.info("registered %s version %s from run %s", name, version.version, run_id)
    return version


# What "no such alias / model" is called: the sqlite store says INVALID_PARAMETER_VALUE for a missing
# alias and RESOURCE_DOES_NOT_EXIST for a missing model; the Databricks REST API says NOT_FOUND.
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


def alias_version(name: str, alias: str) -> Any | None:
    """The version `alias` points at, or None when the alias (or the model) does not exist yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND_CODES:
            return None  # no such alias (or no such model yet)
        # anything else (permission, network, server) must not read as "there is no champion":
        # evaluate would then promote the candidate over a champion it could not see
        raise


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point `alias` at `version`, moving it off any other version (aliases, not stages: UC has none)."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))
    log.info("%s@%s -> version %s", name, alias, version)


def promote_to_champion(name: str, version: str | int) -> bool:
    """Point `champion` at `version`, then delete `challenger` if it points at that same version.

    Returns True when it deleted `challenger`. This follows the MLOps Stacks deployment step
    (deployment/model_deployment/deploy.py): a version that becomes champion is no longer a
    challenger, so `@challenger` never names the model that is already serving. A challenger on
    another version stays, because it is still waiting to be compared. `champion` is set first. If
    the process crashes between the two calls, the version holds both aliases, and the next
    promotion removes `challenger`. No version is ever left with neither.
    A "not found" on delete means someone else removed the alias first, which is not an error.
    Any other registry error (permission, network) is raised.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    set_alias(name, "champion", version)
    challenger = alias_version(name, "challenger")
    if challenger is None or str(challenger.version) != str(version):
        log.info(
            "%s@challenger %s: left as it is",
            name,
            "does not exist" if challenger is None else f"is version {challenger.version}",
        )
        return False
    try:
        MlflowClient().delete_registered_model_alias(name, "challenger")
    except MlflowException as error:
        if error.error_code not in _NOT_FOUND_CODES:
            raise
        log.info("%s@challenger was already gone when version %s became champion", name, version)
        return False
    log.info("%s@challenger deleted: version %s is champion now", name, version)
    return True


def describe_version(name: str, version: str | int, description: str, tags: dict[str, str]) -> None:
    """Put the model card and the gate's verdict on the version, where reviewers of the registry see them."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.update_model_version(name, str(version), description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


def load_run_json(run_id: str, path: str) -> dict[str, Any]:
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
