"""Bundle rehearsal: run the jobs of databricks.yml + resources/*.yml the way Databricks would,
against stand-ins for the workspace, so a deployment is tested as written.

What it does, in the order Databricks does it:
- deploy time (`load_bundle`): merges databricks.yml and every included file, then the target's
  overrides from every file (variables, `targets.<t>.resources`, keyed lists merged by key), applies
  the target mode's presets that change names (development: `[dev <user>] ` job and experiment
  names, `dev_<user>_` Unity Catalog names, schedules paused), resolves every `${...}` reference
  (`var`, `bundle`, `workspace`, `resources.<kind>.<key>.<field>`, a job's `id`), checks every
  `{{...}}` dynamic value reference against the job it is in, and checks that each
  `spark_python_task.python_file` exists. Then the deploy layer (`_variables`, `_DeployLayer`):
  how variables may be set, folders, Unity Catalog grants, ownership, the root path. Anything it
  cannot deploy is a `RehearsalError` naming the file and the key; what the CLI only warns about is
  a `DeployWarning`.
- run time (`Rehearsal.run_job`, `Rehearsal.run_together`): job parameters (defaults, then the
  caller's), a run slot per job (`max_concurrent_runs`: a run waits in the job's queue, or is
  skipped without one), the task graph in `depends_on` order with `run_if: ALL_SUCCESS` and
  condition outcomes, tasks that are ready together running at the same time; a
  `spark_python_task` runs the real script in a fresh process with exactly its resolved
  parameters; a `condition_task` compares with Databricks' operand rules (EQUAL_TO /
  NOT_EQUAL on strings, the others on numbers); a `run_job_task` runs the named job with its
  `job_parameters`; a run a task starts through the Jobs API (`run_now`) is run after the task.

What stands in for the workspace, and is reported by `StandIns.replaced` (key -> (target's, stand-in)):
- the job's Spark session: the runtime session of a job (`DATABRICKS_RUNTIME_VERSION` set, so
  mlops.runtime takes the session the runtime built) is a Spark Connect session to a local server
  with a Hive catalog (`SPARK_REMOTE`);
- Unity Catalog: that server's only catalog, `spark_catalog` (bundle variables `catalog` and
  `source_table`, overridden as `--var` would), with `env/tables=versioned_catalog` (no Delta
  on the stand-in) and `env/feature_store=local` (the Feature Engineering client needs a
  workspace);
- MLflow in the workspace (`databricks` / `databricks-uc`): an MLflow server on 127.0.0.1 of the jobs'
  own MLflow version (integration_tests/servers.start_mlflow_server), reached over REST;
- the workspace's Jobs API: `JobsApiStandIn` on 127.0.0.1 (DATABRICKS_HOST, an access token per task),
  which databricks-sdk calls over HTTP.
The job's environment (Python, Databricks Connect, dependencies, synced files) is the caller's
choice of `python` and bundle root: integration_tests/job_environment.py rebuilds it.

Not emulated, on purpose: task retries (a rehearsal must see the first failure), schedules,
permissions, compute.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.timing import timed

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / ".azure" / "devops-pipelines"
# the application id of the service principal a shared target's variable group holds, in the rehearsal
REHEARSAL_PRINCIPAL = "7f3c2a10-5b6e-4d21-9c0a-3e8b1d2f4a60"
_MACRO = re.compile(r"\$\(([A-Za-z_][\w.\-]*)\)")

_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-\[\]]+)\}")
_DYNAMIC = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# lists that Databricks merges by a key field when a target overrides them (the rest are replaced)
_LIST_KEYS = {
    "tasks": "task_key",
    "job_clusters": "job_cluster_key",
    "environments": "environment_key",
    "parameters": "name",
    "depends_on": "task_key",
}
_NUMERIC_OPS = {
    "GREATER_THAN": float.__gt__,
    "GREATER_THAN_OR_EQUAL": float.__ge__,
    "LESS_THAN": float.__lt__,
    "LESS_THAN_OR_EQUAL": float.__le__,
}


class RehearsalError(Exception):
    """The bundle cannot be deployed or run as written: what, in which file and at which key."""

    def __init__(self, what: str, *, file: str, key: str) -> None:
        self.what, self.file, self.key = what, file, key
        super().__init__(f"{file}: {key}: {what}")


@dataclass(frozen=True)
class Origin:
    """Where a resource was written: the file and the key path of the resource inside it."""

    file: str
    key: str

    def at(self, path: str) -> Origin:
        return Origin(self.file, f"{self.key}{path}")


# -- deploy time ---------------------------------------------------------------------------------------


def deploy_environment(target: str, root: Path = REPO) -> dict[str, str]:
    """The environment the Azure DevOps step that deploys `target` gives the CLI: its `env:` mapping,
    each `$(name)` macro replaced by what the variable group holds in the rehearsal (the deploying
    principal's application id for DATABRICKS_CLIENT_ID, `rehearsal-<name>` for the rest). The
    deployer is `environment["DATABRICKS_CLIENT_ID"]`."""
    for path in sorted((root / PIPELINES.relative_to(REPO)).glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        jobs = [job for stage in doc.get("stages") or [{"jobs": doc.get("jobs")}] for job in stage.get("jobs") or []]
        for job in jobs:
            for step in job.get("steps") or []:
                if f"make bundle-deploy TARGET={target}" in str(step.get("script")):
                    return {
                        name: _MACRO.sub(_group_value, str(value)) for name, value in (step.get("env") or {}).items()
                    }
    raise RehearsalError(f"no pipeline step deploys target {target}", file=".azure/devops-pipelines", key="steps")


def _group_value(macro: re.Match) -> str:
    name = macro.group(1)
    return REHEARSAL_PRINCIPAL if name == "DATABRICKS_CLIENT_ID" else f"rehearsal-{name.removeprefix('BUNDLE_VAR_')}"


def load_as_ci_deploys(target: str, root: Path = REPO, **kwargs: Any) -> DeployedBundle:
    """`load_bundle` as the Azure DevOps step that deploys `target` would: its environment, its principal."""
    environ = deploy_environment(target, root)
    return load_bundle(root, target, environ=environ, user=environ["DATABRICKS_CLIENT_ID"], **kwargs)


def _load(path: Path, root: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RehearsalError(f"not YAML: {error}", file=str(path.relative_to(root)), key="(file)") from None


def _merge(base: Any, override: Any) -> Any:
    """A target's override on top of the base, as the CLI merges them: mappings key by key, lists of
    tasks / parameters / environments by their key field, everything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key in merged and isinstance(value, list) and key in _LIST_KEYS:
                merged[key] = _merge_keyed(merged[key], value, _LIST_KEYS[key])
            else:
                merged[key] = _merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _merge_keyed(base: list, override: list, key: str) -> list:
    merged = [copy.deepcopy(item) for item in base]
    index = {item.get(key): position for position, item in enumerate(merged) if isinstance(item, dict)}
    for item in override:
        if isinstance(item, dict) and item.get(key) in index:
            merged[index[item[key]]] = _merge(merged[index[item[key]]], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged


@dataclass(frozen=True)
class DeployWarning:
    """What the CLI reports as a warning: the deploy goes on, but the target is not as it should be."""

    what: str
    file: str
    key: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.what}"


@dataclass
class DeployedBundle:
    """One target of the bundle, as `bundle deploy -t <target>` would create it: every `${...}` resolved."""

    root: Path
    target: str
    variables: dict[str, Any]
    resources: dict[str, dict[str, Any]]  # kind -> key -> resolved resource
    origins: dict[tuple[str, str], Origin]  # (kind, key) -> where it was written
    python_files: dict[tuple[str, str], Path]  # (job key, task key) -> the script it runs
    job_ids: dict[str, str] = field(default_factory=dict)  # deploy-time job id -> job key
    deployer: str = ""  # the identity that deploys: it creates, and so owns, every resource
    runs_as: str = ""  # the identity the jobs run as: run_as, else the deployer
    root_path: str = ""  # workspace.root_path, expanded as the CLI does
    warnings: list[DeployWarning] = field(default_factory=list)

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.resources.get("jobs", {})

    def origin(self, job_key: str, task_key: str | None = None) -> Origin:
        origin = self.origins[("jobs", job_key)]
        if task_key is None:
            return origin
        position = next(i for i, task in enumerate(self.jobs[job_key]["tasks"]) if task["task_key"] == task_key)
        return origin.at(f".tasks[{position}]")


def _files(root: Path, bundle: dict[str, Any]) -> list[Path]:
    files = [root / "databricks.yml"]
    for pattern in bundle.get("include") or []:
        files += sorted(path for path in root.glob(pattern) if path not in files)
    return files


VARIABLE_ENV_PREFIX = "BUNDLE_VAR_"


def _overrides_file(root: Path, target: str) -> tuple[dict[str, Any], str]:
    """`.databricks/bundle/<target>/variable-overrides.json`, which the CLI reads when it exists
    (bundle/config/mutator/set_variables.go, readVariablesFromFile): a JSON object of name -> value."""
    relative = f".databricks/bundle/{target}/variable-overrides.json"
    path = root / relative
    if not path.is_file():
        return {}, relative
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RehearsalError(f"failed to parse variables file: {error}", file=relative, key="(file)") from None
    if not isinstance(values, dict):
        raise RehearsalError(
            'invalid format: the file must be a JSON object {"var1": "value1"}', file=relative, key="(file)"
        )
    return values, relative


def _variables(
    declared: dict[str, tuple[Any, str]],
    target: dict[str, tuple[Any, str]],
    overrides: dict[str, Any],
    environ: dict[str, str],
    file_values: tuple[dict[str, Any], str],
    target_name: str,
) -> tuple[dict[str, Any], dict[str, Origin]]:
    """Each variable's value and where it came from, in the CLI's order: `--var`, then
    `BUNDLE_VAR_<name>`, then the overrides file, then the target's value, then the default; none is
    an error, as in `bundle validate` ("no value assigned to required variable").

    A complex variable (`type: complex`) can be set neither by `--var` (bundle/config/root.go,
    InitializeVariables) nor from the environment (bundle/config/mutator/set_variables.go), and the
    overrides file must give it a map or a list, and a plain variable a plain value (same file).
    """
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    in_file, file_name = file_values
    for name, (_, file) in target.items():
        if name not in declared:
            raise RehearsalError(
                f"variable {name!r} is not declared", file=file, key=f"targets.{target_name}.variables.{name}"
            )
    for name in overrides:
        if name not in declared:
            raise RehearsalError(f"variable {name} has not been defined", file="(command line)", key=f"--var {name}")
    for name in in_file:
        if name not in declared:
            raise RehearsalError(f'variable "{name}" is not defined', file=file_name, key=name)
    for name, (spec, file) in declared.items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        complex_type = spec.get("type") == "complex"
        env_name = f"{VARIABLE_ENV_PREFIX}{name}"
        if name in overrides:
            if complex_type:
                raise RehearsalError(
                    f"setting variables of complex type via --var flag is not supported: {name} "
                    f"(declared type: complex in {file})",
                    file="(command line)",
                    key=f"--var {name}",
                )
            values[name], origins[name] = overrides[name], Origin("(command line)", f"--var {name}")
        elif env_name in environ:
            if complex_type:
                raise RehearsalError(
                    f"setting via environment variables ({env_name}) is not supported for complex variable "
                    f"{name} (declared type: complex in {file}); set it per target in databricks.yml or in "
                    f"{file_name}",
                    file="(environment)",
                    key=env_name,
                )
            values[name], origins[name] = environ[env_name], Origin("(environment)", env_name)
        elif "lookup" in spec:
            raise RehearsalError(
                f"variable {name!r} is a lookup, which needs a workspace; give it a value",
                file=file,
                key=f"variables.{name}",
            )
        elif in_file.get(name) is not None:
            value = in_file[name]
            if complex_type != isinstance(value, (dict, list)):
                kind = "of type complex, but the value" if complex_type else "not of type complex, but the value"
                raise RehearsalError(
                    f"variable {name} is {kind} in the variable file is {'not ' if complex_type else ''}a complex type",
                    file=file_name,
                    key=name,
                )
            values[name], origins[name] = value, Origin(file_name, name)
        elif name in target:
            value, target_file = target[name]
            values[name] = value.get("default") if isinstance(value, dict) and "default" in value else value
            origins[name] = Origin(target_file, f"targets.{target_name}.variables.{name}")
        elif "default" in spec:
            values[name], origins[name] = spec["default"], Origin(file, f"variables.{name}.default")
        else:
            raise RehearsalError(
                f"no value for required variable {name!r} on target {target_name}", file=file, key=f"variables.{name}"
            )
    return values, origins


def _expand_root_path(root_path: str, user: str) -> str:
    """`~/` is the deployer's home (bundle/config/mutator/expand_workspace_root.go); a workspace path
    gets the `/Workspace` prefix (prepend_workspace_prefix.go)."""
    if root_path.startswith("~/"):
        return f"/Workspace/Users/{user}/{root_path[2:]}"
    if root_path.startswith("/") and not root_path.startswith(("/Workspace/", "/Volumes/")):
        return f"/Workspace{root_path}"
    return root_path


def load_bundle(
    root: Path = REPO,
    target: str = "dev",
    *,
    variables: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    user: str = "rehearsal@example.com",
    git_commit: str = "rehearsal",
) -> DeployedBundle:
    """The target as `bundle deploy -t <target>` by `user` would create it: merged, presets applied,
    every `${...}` resolved and checked, and the deploy layer's rules applied (`_check_deploy_layer`).

    `variables` are `--var` values; `environ` is the deploying process's environment (only its
    `BUNDLE_VAR_*` entries matter), never this process's own.
    """
    root_doc = _load(root / "databricks.yml", root)
    if target not in (root_doc.get("targets") or {}):
        raise RehearsalError(f"no target {target!r}", file="databricks.yml", key="targets")
    documents = {
        path.relative_to(root).as_posix(): (_load(path, root) if path.name != "databricks.yml" else root_doc)
        for path in _files(root, root_doc)
    }
    declared: dict[str, tuple[Any, str]] = {}
    target_variables: dict[str, tuple[Any, str]] = {}
    resources: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], Origin] = {}
    target_doc: dict[str, Any] = {}
    # top-level settings (run_as, workspace, permissions) -> where the target's value was written
    settings = {key: Origin("databricks.yml", key) for key in root_doc}
    for file, doc in documents.items():
        for name, spec in (doc.get("variables") or {}).items():
            declared[name] = (spec, file)
        for kind, entries in (doc.get("resources") or {}).items():
            for key, resource in (entries or {}).items():
                if (kind, key) in origins:
                    raise RehearsalError(
                        f"{kind} {key!r} is also defined in {origins[(kind, key)].file}",
                        file=file,
                        key=f"resources.{kind}.{key}",
                    )
                resources.setdefault(kind, {})[key] = copy.deepcopy(resource)
                origins[(kind, key)] = Origin(file, f"resources.{kind}.{key}")
    for file, doc in documents.items():  # the target's overrides, from every file, after every base definition
        override = (doc.get("targets") or {}).get(target) or {}
        target_doc = _merge(target_doc, override)
        settings.update({key: Origin(file, f"targets.{target}.{key}") for key in override if key != "resources"})
        target_variables.update({name: (value, file) for name, value in (override.get("variables") or {}).items()})
        for kind, entries in (override.get("resources") or {}).items():
            for key, resource in (entries or {}).items():
                origins.setdefault((kind, key), Origin(file, f"targets.{target}.resources.{kind}.{key}"))
                resources.setdefault(kind, {})[key] = _merge(resources.get(kind, {}).get(key, {}), resource)

    values, value_origins = _variables(
        declared, target_variables, variables or {}, environ or {}, _overrides_file(root, target), target
    )
    mode = target_doc.get("mode")
    short_name = re.sub(r"[^a-z0-9]+", "_", user.split("@")[0].lower())
    top = {key: (target_doc[key] if key in target_doc else root_doc.get(key)) for key in ("run_as", "permissions")}
    workspace = dict(root_doc.get("workspace") or {})
    workspace.update(target_doc.get("workspace") or {})
    context: dict[str, Any] = {
        "var": values,
        "bundle": {"name": root_doc["bundle"]["name"], "target": target, "git": {"commit": git_commit}},
        "workspace": {"current_user": {"userName": user, "short_name": short_name}},
    }
    resolver = _Resolver(context, origins)
    root_origin = settings.get("workspace", Origin("databricks.yml", "workspace")).at(".root_path")
    root_path = _expand_root_path(
        resolver.resolve(workspace.get("root_path", "~/.bundle/${bundle.name}/${bundle.target}"), root_origin), user
    )
    context["workspace"].update(
        root_path=root_path,
        file_path=f"{root_path}/files",
        artifact_path=f"{root_path}/artifacts",
        state_path=f"{root_path}/state",
        resource_path=f"{root_path}/resources",
    )
    if mode == "development":
        _development_presets(resources, short_name)
    # numeric, as the Jobs API's: a job id reaches scripts as a Hydra override (monitoring.retrain_job_id)
    job_ids = {str(1001 + i): key for i, key in enumerate(sorted(resources.get("jobs", {})))}
    context["resources"] = {
        kind: {key: dict(resource) for key, resource in entries.items()} for kind, entries in resources.items()
    }
    for job_id, key in job_ids.items():
        context["resources"]["jobs"][key]["id"] = job_id
    resolved = {
        kind: {key: resolver.resolve(resource, origins[(kind, key)]) for key, resource in entries.items()}
        for kind, entries in resources.items()
    }
    run_as_origin = settings.get("run_as", Origin("databricks.yml", "run_as"))
    run_as = resolver.resolve(top["run_as"], run_as_origin) if "run_as" in settings else None
    permissions = resolver.resolve(top["permissions"] or [], settings.get("permissions", Origin("", "")))
    bundle = DeployedBundle(
        root, target, values, resolved, origins, {}, job_ids, deployer=user, runs_as=user, root_path=root_path
    )
    for job_key, job in bundle.jobs.items():
        _check_job(bundle, job_key, job)
    layer = _DeployLayer(bundle, resources, value_origins, settings, mode)
    layer.check_run_as(run_as, run_as_origin)
    layer.check_root_path(permissions, explicit=bool((target_doc.get("workspace") or {}).get("root_path")))
    layer.check_workspace_folders()
    layer.check_grants()
    return bundle


# Unity Catalog refuses grants to these: they are workspace-local system groups (SQL reference,
# "Principal": https://docs.databricks.com/sql/language-manual/sql-ref-principal.html). `account users`
# is the account-level group of everyone.
WORKSPACE_LOCAL_GROUPS = frozenset({"users", "admins"})
# resource kinds that are Unity Catalog securables with `grants` in a bundle
UC_GRANT_KINDS = ("catalogs", "schemas", "volumes", "registered_models")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _workspace_object(path: str) -> str:
    """A workspace path as the workspace stores it: the API strips a `/Workspace` prefix
    (bundle/direct/dresources/experiment.go, stripWorkspacePrefix)."""
    return path[len("/Workspace") :] if path.startswith("/Workspace/") else path


def _ancestors(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part]
    return ["/" + "/".join(parts[:depth]) for depth in range(len(parts) + 1)]


class _DeployLayer:
    """The rules `bundle deploy` and the workspace apply that references and task graphs do not show:
    identities and ownership, folders, grants, root-path permissions. Each rule names its source;
    where the source is silent, the stricter reading is taken and the comment says so."""

    def __init__(
        self,
        bundle: DeployedBundle,
        unresolved: dict[str, dict[str, Any]],
        value_origins: dict[str, Origin],
        settings: dict[str, Origin],
        mode: str | None,
    ) -> None:
        self.bundle, self.unresolved, self.value_origins = bundle, unresolved, value_origins
        self.settings, self.mode = settings, mode

    def check_run_as(self, run_as: Any, origin: Origin) -> None:
        """bundle/config/mutator/resourcemutator/run_as.go: run_as names exactly one identity; when it
        is not the deployer, the CLI refuses quality_monitors (the monitor API has no run_as). The
        deployer creates, and so owns, the registered models; setting or deleting an alias needs the
        owner or a metastore admin (databricks-sdk, RegisteredModelsAPI.set_alias / delete_alias), so
        jobs that run as anyone else fail at their first gate pass."""
        bundle = self.bundle
        if run_as is None:
            return
        identities = [str(value) for value in (run_as or {}).values() if value]
        names = {key for key, value in (run_as or {}).items() if value}
        if not identities:
            raise RehearsalError(
                "run_as section must specify exactly one identity. Neither service_principal_name nor user_name "
                "is specified (an empty variable?)",
                file=origin.file,
                key=origin.key,
            )
        if names == {"service_principal_name", "user_name"}:
            raise RehearsalError(
                "run_as section cannot specify both user_name and service_principal_name",
                file=origin.file,
                key=origin.key,
            )
        bundle.runs_as = identities[0]
        if bundle.runs_as == bundle.deployer:
            return
        if bundle.resources.get("quality_monitors"):
            raise RehearsalError(
                f"quality_monitors do not support a run_as identity different from the owner: deployed by "
                f"{bundle.deployer}, run as {bundle.runs_as}; deploy the target as {bundle.runs_as}",
                file=origin.file,
                key=origin.key,
            )
        models = sorted(bundle.resources.get("registered_models") or {})
        if models:
            raise RehearsalError(
                f"the jobs run as {bundle.runs_as}, but {bundle.deployer} deploys and so owns the registered "
                f"models {models}: only their owner (or a metastore admin) may set or delete the champion and "
                f"challenger aliases; deploy the target as {bundle.runs_as}",
                file=origin.file,
                key=origin.key,
            )

    def check_root_path(self, permissions: list[dict[str, Any]], *, explicit: bool) -> None:
        """bundle/permissions/validate.go: a root path under /Workspace/Shared is writable by every
        workspace user (a warning unless `users` is given CAN_MANAGE on purpose).
        resourcemutator/validate_target_mode.go: `mode: production` needs an explicit root path
        (an error unless run_as is set or a service principal deploys, then a recommendation)."""
        bundle = self.bundle
        origin = self.settings.get("workspace", Origin("databricks.yml", "workspace")).at(".root_path")
        if bundle.root_path.startswith("/Workspace/Shared/") and not any(
            p.get("group_name") == "users" and p.get("level") == "CAN_MANAGE" for p in permissions
        ):
            bundle.warnings.append(
                DeployWarning(
                    f"the bundle root path {bundle.root_path} is writable by all workspace users: anyone could "
                    "change the code the target's jobs run; move it under /Workspace/Users/<deploying principal>",
                    origin.file,
                    origin.key,
                )
            )
        if self.mode == "production" and not explicit:
            runs_as_set = "run_as" in self.settings or _UUID.fullmatch(bundle.deployer)
            if not runs_as_set:
                raise RehearsalError(
                    "target with 'mode: production' must set 'workspace.root_path' to make sure only one copy is "
                    "deployed",
                    file="databricks.yml",
                    key=f"targets.{bundle.target}.workspace.root_path",
                )

    def existing_folders(self) -> set[str]:
        """Workspace folders there are when the deploy creates resources. The deploy uploads the files
        before it creates any resource (bundle/phases/deploy.go: files.Upload, then deployCore) and
        makes the upload folder with Workspace mkdirs, parents included (libs/sync/path.go), so the
        root path and its ancestors exist. Besides: /, /Users, /Shared, and a person's home (a
        service principal's home only as an ancestor of its root path: the stricter reading, since
        no source says when it exists)."""
        bundle = self.bundle
        folders = {"/", "/Users", "/Shared", *_ancestors(_workspace_object(bundle.root_path + "/files"))}
        if not _UUID.fullmatch(bundle.deployer):
            folders.add(f"/Users/{bundle.deployer}")
        return folders

    def check_workspace_folders(self) -> None:
        """Neither deployment engine creates an experiment's parent folder: both call only
        CreateExperiment (bundle/direct/dresources/experiment.go; the Terraform provider's
        resource_mlflow_experiment.go), and the workspace answers RESOURCE_DOES_NOT_EXIST. For a
        quality monitor's assets_dir the sources are silent; the stricter reading: its parent must
        exist too."""
        bundle, existing = self.bundle, self.existing_folders()
        places = [("experiments", "name"), ("quality_monitors", "assets_dir")]
        for kind, field_name in places:
            for key, resource in sorted((bundle.resources.get(kind) or {}).items()):
                path = str(resource.get(field_name) or "")
                where = bundle.origins[(kind, key)].at(f".{field_name}")
                if not path.startswith("/"):
                    raise RehearsalError(
                        f"{kind} {key}: {field_name} {path!r} is not an absolute workspace path",
                        file=where.file,
                        key=where.key,
                    )
                parent = _workspace_object(path).rsplit("/", 1)[0] or "/"
                if parent not in existing:
                    raise RehearsalError(
                        f"{kind} {key}: RESOURCE_DOES_NOT_EXIST: Parent directory {parent} does not exist, and "
                        f"`bundle deploy` does not create it; place it in the bundle's root path "
                        f"({_workspace_object(bundle.root_path)}), which the deploy creates",
                        file=where.file,
                        key=where.key,
                    )

    def check_grants(self) -> None:
        """No Unity Catalog grant to a workspace-local group (WORKSPACE_LOCAL_GROUPS). A principal
        that comes from a variable is reported where the variable got its value."""
        bundle = self.bundle
        for kind in UC_GRANT_KINDS:
            for key, resource in sorted((bundle.resources.get(kind) or {}).items()):
                written = self.unresolved.get(kind, {}).get(key, {}).get("grants") or []
                for position, grant in enumerate(resource.get("grants") or []):
                    principal = str(grant.get("principal", ""))
                    if principal.casefold() not in WORKSPACE_LOCAL_GROUPS:
                        continue
                    where = bundle.origins[(kind, key)].at(f".grants[{position}].principal")
                    source = _REFERENCE.fullmatch(
                        str((written[position] if position < len(written) else {}).get("principal", ""))
                    )
                    if source and source.group(1).startswith("var."):
                        where = self.value_origins.get(source.group(1)[4:], where)
                    raise RehearsalError(
                        f"{kind} {key} grants {grant.get('privileges')} to {principal!r}, a workspace-local group "
                        f"that Unity Catalog refuses; grant to an account group (e.g. `account users`) or a user",
                        file=where.file,
                        key=where.key,
                    )


def _development_presets(resources: dict[str, dict[str, Any]], short_name: str) -> None:
    """What `mode: development` does to names and schedules (the CLI's ProcessTargetMode)."""
    for job in resources.get("jobs", {}).values():
        job["name"] = f"[dev {short_name}] {job.get('name', '')}"
        if "schedule" in job:
            job["schedule"] = {**job["schedule"], "pause_status": "PAUSED"}
    for model in resources.get("registered_models", {}).values():
        model["name"] = f"dev_{short_name}_{model['name']}"
    for experiment in resources.get("experiments", {}).values():
        folder, _, leaf = str(experiment["name"]).rpartition("/")
        experiment["name"] = f"{folder}/[dev {short_name}] {leaf}"


class _Resolver:
    """`${...}` references against the deploy-time context; resources may reference each other."""

    def __init__(self, context: dict[str, Any], origins: dict[tuple[str, str], Origin]) -> None:
        self.context, self.origins = context, origins
        self._resolving: set[str] = set()

    def resolve(self, value: Any, origin: Origin) -> Any:
        if isinstance(value, dict):
            return {key: self.resolve(item, origin.at(f".{key}")) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item, origin.at(f"[{i}]")) for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole:  # a whole-string reference keeps the value's type (a complex variable stays a list or map)
            return self._lookup(whole.group(1), origin)

        def text(match: re.Match) -> str:
            found = self._lookup(match.group(1), origin)
            if isinstance(found, (dict, list)):
                raise RehearsalError(
                    f"${{{match.group(1)}}} is a complex value inside a string {value!r}",
                    file=origin.file,
                    key=origin.key,
                )
            return str(found)

        return _REFERENCE.sub(text, value)

    def _lookup(self, reference: str, origin: Origin) -> Any:
        path = reference.split(".")
        node: Any = self.context
        for depth, part in enumerate(path):
            if isinstance(node, dict) and part in node:
                node = node[part]
                continue
            raise RehearsalError(
                f"cannot resolve ${{{reference}}}: {self._why(path, depth)}", file=origin.file, key=origin.key
            )
        if node is None:
            raise RehearsalError(f"${{{reference}}} has no value", file=origin.file, key=origin.key)
        if isinstance(node, (str, dict, list)) and _REFERENCE.search(json.dumps(node)):
            # a value that itself refers on (a resource's name built from variables): resolve it first
            if reference in self._resolving:
                raise RehearsalError(f"${{{reference}}} refers to itself", file=origin.file, key=origin.key)
            self._resolving.add(reference)
            try:
                node = self.resolve(node, origin)
            finally:
                self._resolving.discard(reference)
        return node

    @staticmethod
    def _why(path: list[str], depth: int) -> str:
        if path[0] == "var":
            return f"no variable {path[1]!r} is declared" if depth == 1 else "the variable has no such field"
        if path[0] == "resources" and depth <= 2:
            return f"no {path[1]} resource named {path[2]!r}" if depth == 2 else f"no resources of kind {path[1]!r}"
        return f"{'.'.join(path[: depth + 1])!r} does not exist"


def _dynamic_references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _dynamic_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dynamic_references(item)
    elif isinstance(value, str):
        yield from _DYNAMIC.findall(value)


def _upstream(tasks: dict[str, dict[str, Any]], task_key: str) -> set[str]:
    seen: set[str] = set()
    pending = [dep["task_key"] for dep in tasks[task_key].get("depends_on") or []]
    while pending:
        key = pending.pop()
        if key not in seen and key in tasks:
            seen.add(key)
            pending += [dep["task_key"] for dep in tasks[key].get("depends_on") or []]
    return seen


def _check_job(bundle: DeployedBundle, job_key: str, job: dict[str, Any]) -> None:
    """What the Jobs API and the CLI refuse: unknown dependencies, references to undefined job
    parameters or to task values of tasks that do not run before, a missing python_file."""
    tasks = {task["task_key"]: task for task in job.get("tasks") or []}
    parameters = {p["name"] for p in job.get("parameters") or []}
    origin = bundle.origins[("jobs", job_key)]
    for position, (task_key, task) in enumerate(tasks.items()):
        where = origin.at(f".tasks[{position}]")
        for dependency in task.get("depends_on") or []:
            if dependency["task_key"] not in tasks:
                raise RehearsalError(
                    f"depends on task {dependency['task_key']!r}, which job {job_key} does not have",
                    file=where.file,
                    key=f"{where.key}.depends_on",
                )
        for reference in _dynamic_references(task):
            parts = reference.split(".")
            if parts[0] == "job" and parts[1:2] == ["parameters"] and parts[2] not in parameters:
                raise RehearsalError(
                    f"{{{{{reference}}}}}: job {job_key} has no parameter {parts[2]!r}", file=where.file, key=where.key
                )
            if parts[0] == "tasks" and (
                len(parts) != 4 or parts[2] != "values" or parts[1] not in _upstream(tasks, task_key)
            ):
                raise RehearsalError(
                    f"{{{{{reference}}}}}: task values come only from a task this one depends on",
                    file=where.file,
                    key=where.key,
                )
        if "spark_python_task" in task:
            python_file = task["spark_python_task"].get("python_file")
            script = (bundle.root / Path(where.file).parent / str(python_file)).resolve()
            if not python_file or not script.is_file():
                raise RehearsalError(
                    f"python_file {python_file!r} does not exist (relative to {where.file})",
                    file=where.file,
                    key=f"{where.key}.spark_python_task.python_file",
                )
            bundle.python_files[(job_key, task_key)] = script
        if "run_job_task" in task and task["run_job_task"].get("job_id") not in bundle.job_ids:
            raise RehearsalError(
                f"run_job_task names job id {task['run_job_task'].get('job_id')!r}, not a job of this bundle",
                file=where.file,
                key=f"{where.key}.run_job_task.job_id",
            )


# -- run time ------------------------------------------------------------------------------------------


def job_parameters(bundle: DeployedBundle, job_key: str, given: dict[str, Any] | None = None) -> dict[str, str]:
    """A run's job parameters: the job's defaults, then the caller's; an undefined one is refused."""
    job = bundle.jobs[job_key]
    defaults = {p["name"]: str(p["default"]) for p in job.get("parameters") or []}
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        origin = bundle.origin(job_key)
        raise RehearsalError(
            f"job {job_key} has no parameters {unknown}", file=origin.file, key=f"{origin.key}.parameters"
        )
    return {**defaults, **{key: str(value) for key, value in (given or {}).items()}}


def task_arguments(
    bundle: DeployedBundle,
    job_key: str,
    task_key: str,
    parameters: dict[str, str],
    task_values: dict[str, dict[str, Any]] | None = None,
    run_id: str = "1",
) -> list[str]:
    """The command-line arguments a spark_python_task gets in a run (`run_id`) with these job parameters."""
    task = next(task for task in bundle.jobs[job_key]["tasks"] if task["task_key"] == task_key)
    job_id = next(job_id for job_id, key in bundle.job_ids.items() if key == job_key)
    context = {
        "job": {"id": job_id, "run_id": run_id, "parameters": parameters},
        "task": {"name": task_key},
        "tasks": {key: {"values": values} for key, values in (task_values or {}).items()},
    }
    return _render(task["spark_python_task"].get("parameters") or [], context, bundle.origin(job_key, task_key))


@dataclass
class TaskRun:
    task_key: str
    state: str  # SUCCESS | FAILED | EXCLUDED | UPSTREAM_FAILED
    seconds: float = 0.0
    began: float = 0.0  # time.monotonic() when it started and ended: what overlapped what
    ended: float = 0.0
    detail: str = ""  # a failure's reason, a condition's evaluation
    outcome: str | None = None  # a condition task's "true" / "false"
    values: dict[str, Any] = field(default_factory=dict)
    child: JobRun | None = None
    # runs of jobs the task started through the Jobs API (run_now), run by the rehearsal after it
    started: list[JobRun] = field(default_factory=list)


@dataclass
class JobRun:
    job_key: str
    parameters: dict[str, str]
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    seconds: float = 0.0
    queued_seconds: float = 0.0  # waiting for a free run slot of its job (max_concurrent_runs, queue)
    began: float = 0.0
    ended: float = 0.0
    skipped: bool = False  # the job was at max_concurrent_runs without a queue: Databricks skips the run

    def all_runs(self) -> list[JobRun]:
        """This run and every run below it (run_job_task children, runs started through the Jobs API)."""
        found = [self]
        for task in self.tasks.values():
            for below in ([task.child] if task.child is not None else []) + task.started:
                found += below.all_runs()
        return found

    @property
    def succeeded(self) -> bool:
        return not self.skipped and all(run.state in ("SUCCESS", "EXCLUDED") for run in self.tasks.values())

    def failures(self) -> list[tuple[str, TaskRun]]:
        """(job key, task run) of every failed task, down through the jobs it ran."""
        found = []
        for run in self.tasks.values():
            if run.child is not None:
                found += run.child.failures()
            if run.state == "FAILED" and run.child is None:
                found.append((self.job_key, run))
        return found

    def describe(self, indent: str = "") -> str:
        state = "SKIPPED" if self.skipped else "SUCCESS" if self.succeeded else "FAILED"
        queued = f" after {self.queued_seconds:.1f} s in the queue" if self.queued_seconds >= 0.5 else ""
        lines = [f"{indent}{self.job_key} {self.parameters or ''}: {state} in {self.seconds:.1f} s{queued}"]
        for run in self.tasks.values():
            extra = f" -> {run.outcome}" if run.outcome is not None else ""
            lines.append(f"{indent}  {run.task_key:<28} {run.state:<16} {run.seconds:7.1f} s{extra}")
            if run.child is not None:
                lines.append(run.child.describe(indent + "    "))
            for started in run.started:
                lines.append(f"{indent}    started through the Jobs API:")
                lines.append(started.describe(indent + "    "))
        return "\n".join(lines)


@dataclass
class StandIns:
    """What the rehearsal points at instead of a workspace (see the module docstring)."""

    spark_remote: str
    # the workspace's MLflow: a server (servers.start_mlflow_server) reached over REST, as a job
    # reaches its workspace's; artifacts under mlflow_root, written by the clients directly
    mlflow_uri: str
    mlflow_root: Path
    catalog: str = "spark_catalog"

    def variables(self, as_written: DeployedBundle) -> dict[str, str]:
        """`--var` values: the stand-in's catalog, and the target's source table moved into it."""
        source = str(as_written.variables["source_table"]).split(".")
        return {"catalog": self.catalog, "source_table": ".".join([self.catalog, *source[1:]])}

    def overrides(self) -> list[str]:
        """Hydra overrides appended to every python task's own parameters."""
        return [
            f"env.mlflow.tracking_uri={self.mlflow_uri}",
            f"env.mlflow.registry_uri={self.mlflow_uri}",
            f"env.mlflow.artifact_root={self.mlflow_root}/artifacts",
            "env/tables=versioned_catalog",
            "env/feature_store=local",
        ]

    def replaced(self, as_written: DeployedBundle) -> dict[str, tuple[Any, Any]]:
        """key -> (the target's value, the stand-in's): everything the rehearsal does not run as written."""
        from mlops.config import compose_config

        env = compose_config([f"env={as_written.target}"]).env
        report: dict[str, tuple[Any, Any]] = {
            f"var.{name}": (as_written.variables[name], value) for name, value in self.variables(as_written).items()
        }
        for override in self.overrides():
            key, value = override.split("=", 1)
            theirs = _choice(env, key) if "/" in key else _select(env, key.removeprefix("env."))
            report[key] = (theirs, value)
        report["spark session"] = ("the job's runtime session", f"SPARK_REMOTE={self.spark_remote}")
        return report


def _choice(env: Any, group: str) -> str | None:
    """The option of a config group (e.g. env/tables) the env chose: the file whose `_target_` it has."""
    import yaml

    from mlops.config import CONF_DIR

    target = _select(env, group.split("/", 1)[1] + "._target_")
    return next(
        (
            path.stem
            for path in sorted((CONF_DIR / group).glob("*.yaml"))
            if (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("_target_") == target
        ),
        None,
    )


def _select(env: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(env, key)


class Rehearsal:
    """Runs a deployed bundle's jobs; every task run is kept in `runs` for the test to read."""

    def __init__(
        self,
        bundle: DeployedBundle,
        stand_ins: StandIns,
        logs: Path,
        *,
        python: str = sys.executable,
        task_timeout: float = 900,
    ) -> None:
        self.bundle, self.stand_ins, self.logs = bundle, stand_ins, logs
        self.python, self.task_timeout = python, task_timeout
        self.runs: list[JobRun] = []
        self._lock = threading.Lock()
        self._run_ids = _Counter(1000)
        self._task_logs = _Counter(0)
        # a run slot per job (max_concurrent_runs): a run waits for one when the job queues, else is skipped
        self._slots = {
            key: threading.BoundedSemaphore(int(job.get("max_concurrent_runs") or 1))
            for key, job in bundle.jobs.items()
        }
        self.jobs_api = JobsApiStandIn(bundle, self._run_ids)
        logs.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.jobs_api.stop()

    def __enter__(self) -> Rehearsal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @timed("the rehearsal's jobs (scripts in the jobs' environment)")
    def run_job(self, job_key: str, parameters: dict[str, str] | None = None) -> JobRun:
        if job_key not in self.bundle.jobs:
            raise RehearsalError(
                f"target {self.bundle.target} has no job {job_key!r}",
                file="resources/*.yml",
                key=f"resources.jobs.{job_key}",
            )
        job = self.bundle.jobs[job_key]
        run = JobRun(job_key, job_parameters(self.bundle, job_key, parameters))
        run_id = str(next(self._run_ids))
        asked = time.monotonic()
        slot = self._slots[job_key]
        if not slot.acquire(blocking=bool((job.get("queue") or {}).get("enabled"))):
            # Jobs API: with max_concurrent_runs reached and no queue, "the run is skipped"
            run.skipped = True
            log.info("job %s %s: SKIPPED (max_concurrent_runs reached, no queue)", job_key, run.parameters)
            self.runs.append(run)
            return run
        try:
            run.began = time.monotonic()
            run.queued_seconds = run.began - asked
            log.info("job %s %s", job_key, run.parameters)
            run.tasks = self._run_graph(job_key, job, run, run_id)
        finally:
            run.ended = time.monotonic()
            slot.release()
        run.seconds = run.ended - run.began
        with self._lock:
            self.runs.append(run)
        return run

    @timed("the rehearsal's jobs (scripts in the jobs' environment)")
    def run_together(self, *calls: tuple[str, dict[str, str] | None]) -> list[JobRun]:
        """Start several job runs at the same moment, as two schedules or two callers would, and wait
        for all: runs of different jobs overlap; runs of one job take turns through its queue."""
        results: list[JobRun | BaseException | None] = [None] * len(calls)

        def start(position: int, job_key: str, parameters: dict[str, str] | None) -> None:
            try:
                results[position] = self.run_job(job_key, parameters)
            except BaseException as error:
                results[position] = error

        threads = [
            threading.Thread(target=start, args=(i, key, parameters), name=f"rehearsal-{key}")
            for i, (key, parameters) in enumerate(calls)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, JobRun)]

    def _run_graph(self, job_key: str, job: dict[str, Any], run: JobRun, run_id: str) -> dict[str, TaskRun]:
        """Every task of the run, each started once all it depends on has finished: "Databricks runs
        upstream tasks before running downstream tasks, running as many of them in parallel as
        possible" (docs.databricks.com/jobs/run-if.html). Tasks that are ready together run at the
        same time, each in a thread of its own; the result is in dependency order."""
        ordered = _in_dependency_order(job["tasks"])  # refuses a cycle before anything runs
        finished: dict[str, TaskRun] = {}
        errors: list[BaseException] = []
        changed = threading.Condition()
        pending, running = list(ordered), 0

        def work(task: dict[str, Any], finished_now: dict[str, TaskRun]) -> None:
            nonlocal running
            result: TaskRun | None = None
            try:
                result = self._run_task(job_key, job, task, run, run_id, finished_now)
            except BaseException as error:  # raised in the caller's thread below
                errors.append(error)
            with changed:
                if result is not None:
                    finished[task["task_key"]] = result
                running -= 1
                changed.notify_all()

        with changed:
            while running or (pending and not errors):
                ready = [t for t in pending if all(d["task_key"] in finished for d in t.get("depends_on") or [])]
                for task in [] if errors else ready:
                    pending.remove(task)
                    running += 1
                    threading.Thread(
                        target=work, args=(task, dict(finished)), name=f"rehearsal-{job_key}-{task['task_key']}"
                    ).start()
                if running:
                    changed.wait()
        if errors:
            raise errors[0]
        return {task["task_key"]: finished[task["task_key"]] for task in ordered}

    def _run_task(
        self,
        job_key: str,
        job: dict[str, Any],
        task: dict[str, Any],
        run: JobRun,
        run_id: str,
        finished: dict[str, TaskRun],
    ) -> TaskRun:
        """One task, given the runs of the job's tasks finished when it starts (all it depends on among them)."""
        task_key = task["task_key"]
        blocked = _blocked(task, finished)
        if blocked:
            return TaskRun(task_key, blocked)
        began = time.monotonic()
        context = {
            "job": {
                "id": self.job_id(job_key),
                "name": job.get("name", job_key),
                "run_id": run_id,
                "parameters": run.parameters,
            },
            "task": {"name": task_key},
            "tasks": {key: {"values": done.values} for key, done in finished.items()},
        }
        where = self.bundle.origin(job_key, task_key)
        try:
            if "spark_python_task" in task:
                result = self._python_task(job_key, job, task, context)
            elif "condition_task" in task:
                result = _condition(task_key, _render(task["condition_task"], context, where))
            elif "run_job_task" in task:
                spec = _render(task["run_job_task"], context, where)
                child = self.run_job(self.bundle.job_ids[spec["job_id"]], spec.get("job_parameters") or {})
                result = TaskRun(
                    task_key,
                    "SUCCESS" if child.succeeded else "FAILED",
                    child=child,
                    detail="" if child.succeeded else f"job {child.job_key} failed",
                )
            else:
                raise RehearsalError(
                    f"task type {sorted(set(task) - {'task_key', 'depends_on'})} is not rehearsed",
                    file=where.file,
                    key=where.key,
                )
        except _DynamicReferenceError as error:
            result = TaskRun(task_key, "FAILED", detail=str(error))
        result.began, result.ended = began, time.monotonic()
        result.seconds = result.ended - began
        log.info(
            "  %s.%s: %s in %.1f s%s",
            job_key,
            task_key,
            result.state,
            result.seconds,
            f" ({result.detail.splitlines()[-1]})" if result.state == "FAILED" and result.detail else "",
        )
        return result

    def job_id(self, job_key: str) -> str:
        return next(job_id for job_id, key in self.bundle.job_ids.items() if key == job_key)

    def _python_task(self, job_key: str, job: dict[str, Any], task: dict[str, Any], context: dict) -> TaskRun:
        task_key = task["task_key"]
        where = self.bundle.origin(job_key, task_key)
        arguments = task_arguments(
            self.bundle,
            job_key,
            task_key,
            context["job"]["parameters"],
            {key: done["values"] for key, done in context["tasks"].items()},
            run_id=context["job"]["run_id"],
        )
        script = self.bundle.python_files[(job_key, task_key)]
        stem = f"{next(self._task_logs):03d}-{job_key}-{task_key}"
        token = f"{JobsApiStandIn.TOKEN}-{stem}"  # who asks the Jobs API: this task, and no task beside it
        self.jobs_api.tokens.add(token)
        env = {**_clean_environment(), **self._runtime_environment(job, task), "DATABRICKS_TOKEN": token}
        command = [self.python, script.name, *arguments, *self.stand_ins.overrides()]
        (self.logs / f"{stem}.command.json").write_text(json.dumps(command, indent=1))
        timeout = min(float(task.get("timeout_seconds") or self.task_timeout), self.task_timeout)
        with open(self.logs / f"{stem}.log", "w", encoding="utf-8") as output:
            try:
                # the script's own folder as working directory, as a job runs a workspace file
                exit_code = subprocess.run(
                    command, cwd=script.parent, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout
                ).returncode
            except subprocess.TimeoutExpired:
                exit_code = None
        # the runs the task asked the Jobs API for start once it is done (Databricks starts them at
        # once, beside the rest of its job; none of our jobs has a task after the one that starts)
        started = [self.run_job(key, parameters) for key, parameters in self.jobs_api.take(token)]
        if exit_code == 0:
            return TaskRun(task_key, "SUCCESS", started=started)
        tail = "\n".join((self.logs / f"{stem}.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        reason = f"timed out after {timeout:.0f} s" if exit_code is None else f"exited {exit_code}"
        return TaskRun(
            task_key,
            "FAILED",
            started=started,
            detail=f"job {job_key} task {task_key} ({where.file}, {where.key}) {reason}; "
            f"parameters {arguments}; log {self.logs / f'{stem}.log'}:\n{tail}",
        )

    def _runtime_environment(self, job: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
        """What a serverless job's process sees: a runtime version, its Spark session, and a workspace
        (the Jobs API stand-in) that databricks-sdk authenticates to as the job's identity."""
        environments = {env["environment_key"]: env for env in job.get("environments") or []}
        version = environments.get(task.get("environment_key"), {}).get("spec", {}).get("environment_version", "")
        return {
            "DATABRICKS_RUNTIME_VERSION": f"client.{version}",
            "SPARK_REMOTE": self.stand_ins.spark_remote,
            "DATABRICKS_HOST": self.jobs_api.host,
            "PYTHONUNBUFFERED": "1",
        }


# what a task process must not inherit from the test's own process: its Python, its workspace
_PROCESS_ONLY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME")


def _clean_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in _PROCESS_ONLY and not name.startswith(("DATABRICKS_", "BUNDLE_VAR_"))
    }


class _Counter:
    """next() of increasing integers, safe from several threads (the rehearsal's concurrent runs)."""

    def __init__(self, start: int) -> None:
        self._next, self._lock = start, threading.Lock()

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1


class JobsApiStandIn:
    """The workspace's Jobs API on 127.0.0.1, for the one call our tasks make: `POST /api/2.2/jobs/run-now`
    (databricks-sdk `WorkspaceClient().jobs.run_now`, mlops.retrain).

    As the API documents it: the job must exist (else 400 INVALID_PARAMETER_VALUE), the caller must
    authenticate (else 401), job parameters must be the job's (else 400), and "if a run with the
    provided token already exists, the request does not create a new run but returns the ID of the
    existing run instead" (databricks-sdk `JobsAPI.run_now`, idempotency_token). Every other path
    answers 404, which databricks-sdk takes for "no host metadata" and goes on. Accepted runs wait in
    `take()` for the rehearsal to run them.
    """

    TOKEN = "rehearsal-token"

    def __init__(self, bundle: DeployedBundle, run_ids: Iterator[int]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stand_in = self
        self.bundle, self._run_ids = bundle, run_ids
        self.requests: list[dict[str, Any]] = []  # every run-now request, for tests to read
        self.tokens = {self.TOKEN}  # the access tokens it accepts: one per rehearsed task
        self._by_token: dict[str, int] = {}
        self._pending: dict[str, list[tuple[str, dict[str, str]]]] = {}  # access token -> accepted runs
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = stand_in._answer(self.path, self.headers.get("Authorization"), body)
                self._send(status, answer)

            def do_GET(self) -> None:
                self._send(404, {"error_code": "NOT_FOUND", "message": f"{self.path} is not served here"})

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _answer(self, path: str, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/api/2.2/jobs/run-now":
            return 404, {"error_code": "NOT_FOUND", "message": f"{path} is not served here"}
        caller = (authorization or "").removeprefix("Bearer ")
        if caller not in self.tokens:
            return 401, {"error_code": "UNAUTHENTICATED", "message": "invalid access token"}
        request = json.loads(body or b"{}")
        with self._lock:
            self.requests.append(request)
            job_key = self.bundle.job_ids.get(str(request.get("job_id")))
            if job_key is None:
                return 400, {
                    "error_code": "INVALID_PARAMETER_VALUE",
                    "message": f"Job {request.get('job_id')} does not exist.",
                }
            try:
                job_parameters(self.bundle, job_key, request.get("job_parameters") or {})  # refuses unknown ones
            except RehearsalError as error:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": error.what}
            token = request.get("idempotency_token")
            if token in self._by_token:
                return 200, {"run_id": self._by_token[token], "number_in_job": self._by_token[token]}
            run_id = next(self._run_ids)
            if token:
                self._by_token[token] = run_id
            self._pending.setdefault(caller, []).append((job_key, request.get("job_parameters") or {}))
            return 200, {"run_id": run_id, "number_in_job": run_id}

    def take(self, token: str = TOKEN) -> list[tuple[str, dict[str, str]]]:
        """(job key, job parameters) of the runs accepted for the caller with this access token since the
        last call."""
        with self._lock:
            return self._pending.pop(token, [])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _in_dependency_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks after everything they depend on; among ready tasks, the order they are written in."""
    done: set[str] = set()
    pending = list(tasks)
    ordered = []
    while pending:
        ready = [t for t in pending if all(dep["task_key"] in done for dep in t.get("depends_on") or [])]
        if not ready:
            raise RehearsalError(
                f"a dependency cycle among {[t['task_key'] for t in pending]}", file="(job)", key="tasks"
            )
        ordered.append(ready[0])
        done.add(ready[0]["task_key"])
        pending.remove(ready[0])
    return ordered


def _blocked(task: dict[str, Any], finished: dict[str, TaskRun]) -> str | None:
    """Why the task does not run under run_if ALL_SUCCESS (the only rule our jobs use), or None."""
    run_if = task.get("run_if", "ALL_SUCCESS")
    if run_if != "ALL_SUCCESS":
        raise RehearsalError(f"run_if {run_if} is not rehearsed", file="(job)", key=f"tasks.{task['task_key']}")
    for dependency in task.get("depends_on") or []:
        upstream = finished[dependency["task_key"]]
        if upstream.state in ("FAILED", "UPSTREAM_FAILED"):
            return "UPSTREAM_FAILED"
        if upstream.state == "EXCLUDED":
            return "EXCLUDED"
        if "outcome" in dependency and upstream.outcome != str(dependency["outcome"]):
            return "EXCLUDED"  # the condition went the other way: this branch is not taken
    return None


class _DynamicReferenceError(Exception):
    pass


def _render(value: Any, context: dict[str, Any], where: Origin) -> Any:
    """`{{...}}` dynamic value references replaced at run time; task values keep Databricks' text form."""
    if isinstance(value, dict):
        return {key: _render(item, context, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, context, where) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise _DynamicReferenceError(
                    f"{where.file}: {where.key}: {{{{{match.group(1)}}}}} has no value in this run"
                )
            node = node[part]
        if isinstance(node, bool):
            return "true" if node else "false"
        return node if isinstance(node, str) else json.dumps(node)

    return _DYNAMIC.sub(replace, value)


def _condition(task_key: str, spec: dict[str, Any]) -> TaskRun:
    op, left, right = spec["op"], str(spec["left"]), str(spec["right"])
    if op in ("EQUAL_TO", "NOT_EQUAL"):
        outcome = (left == right) == (op == "EQUAL_TO")
    elif op in _NUMERIC_OPS:
        try:
            outcome = _NUMERIC_OPS[op](float(left), float(right))
        except ValueError:
            return TaskRun(task_key, "FAILED", detail=f"{op} needs numbers: {left!r}, {right!r}")
    else:
        return TaskRun(task_key, "FAILED", detail=f"unknown condition operator {op!r}")
    value = "true" if outcome else "false"
    return TaskRun(task_key, "SUCCESS", outcome=value, detail=f"{left!r} {op} {right!r} -> {value}")
