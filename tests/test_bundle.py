"""Offline checks of the Databricks Asset Bundle config (no Spark, no network, no Databricks CLI).

databricks.yml and every resources/*.yml are validated against the bundle JSON schema of
databricks/cli v1.13.0 (tests/schemas/, see its README), plus what the schema cannot see:
the target/catalog convention, no hard-coded workspace host or credentials, and that every
spark_python_task runs an existing script with Hydra key=value overrides.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
SCHEMA_PATH = TESTS_DIR / "schemas" / "databricks-bundle.schema.json"
BUNDLE_ROOT = PROJECT_ROOT / "databricks.yml"
RESOURCE_FILES = sorted((PROJECT_ROOT / "resources").glob("*.yml"))
BUNDLE_FILES = [BUNDLE_ROOT, *RESOURCE_FILES]
TRAINING_RESOURCE = PROJECT_ROOT / "resources" / "model-workflow-resource.yml"
SCRIPTS_DIR = PROJECT_ROOT / "scripts"
CONF_DIR = PROJECT_ROOT / "conf"

EXPECTED_TARGETS = {"dev", "staging", "prod", "test"}
# one Hydra override per parameter: `key=value` or `group.key=value`, no flags such as --cfg or -m
HYDRA_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*=\S+$")
# credentials and workspace addresses that must come from the environment or a CLI profile
FORBIDDEN_WORKSPACE_KEYS = {"host", "token", "password", "client_secret", "azure_client_secret"}
SECRET_LIKE = re.compile(r"\bdapi[0-9a-f]{32}\b|https://[^\s\"']*\.(cloud\.databricks\.com|azuredatabricks\.net|gcp\.databricks\.com)")


def _rel(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


def _load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _describe(errors: list[ValidationError], where: str) -> str:
    """The most relevant error (jsonschema's best_match) and its leaf reasons, for a failure message."""
    error = best_match(errors)
    lines = [f"{where}: {len(errors)} schema error(s); most relevant: {error.json_path} -> {error.message[:300]}"]
    # leaf reasons, minus the "does not match '\\$\\{(var...'" noise of the ${...} alternatives
    leaves = [e for e in error.context or [] if not (e.validator == "pattern" and str(e.validator_value).startswith("\\$"))]
    for leaf in sorted(leaves, key=lambda e: len(e.path))[:5]:
        lines.append(f"  - {leaf.json_path}: {leaf.message[:200]}")
    return "\n".join(lines)


def _assert_valid(validator: Draft202012Validator, doc, where: str) -> None:
    errors = list(validator.iter_errors(doc))
    if errors:
        message = _describe(errors, where)
        print(message)
        pytest.fail(message)


def _reject_deprecated(validator, deprecated, instance, schema):
    if deprecated is True:
        yield ValidationError(f"deprecated field: {schema.get('description') or schema.get('deprecationMessage')}")


# Draft 2020-12 treats `deprecated` as an annotation only; this variant turns it into an error
DeprecationStrictValidator = validators.extend(Draft202012Validator, {"deprecated": _reject_deprecated})


@pytest.fixture(scope="module")
def bundle_schema() -> dict:
    """The ~900 KB schema, read once for the whole module."""
    raw = SCHEMA_PATH.read_text(encoding="utf-8")
    # ${var...} patterns use \p{L} / \p{N}, which Python's re lacks: map them to equivalent classes
    raw = raw.replace(r"[\\p{L}\\p{N}]", r"[^\\W_]").replace(r"\\p{L}", r"[^\\W\\d_]")
    assert r"\\p{" not in raw, "an unhandled \\p{...} class is left in the schema"
    schema = json.loads(raw)
    Draft202012Validator.check_schema(schema)  # also proves every pattern now compiles
    return schema


@pytest.fixture(scope="module")
def validator(bundle_schema: dict) -> Draft202012Validator:
    return Draft202012Validator(bundle_schema)


@pytest.fixture(scope="module")
def strict_validator(bundle_schema: dict) -> Draft202012Validator:
    return DeprecationStrictValidator(bundle_schema)


@pytest.fixture(scope="module")
def bundle() -> dict:
    return _load_yaml(BUNDLE_ROOT)


def _jobs(doc: dict) -> dict:
    return ((doc or {}).get("resources") or {}).get("jobs") or {}


def _training_job(doc: dict) -> dict:
    return _jobs(doc)["clv_model_training_job"]


def _python_tasks():
    """(resource file, job key, task) for every spark_python_task in resources/*.yml."""
    for path in RESOURCE_FILES:
        for job_key, job in _jobs(_load_yaml(path)).items():
            for task in job.get("tasks") or []:
                if "spark_python_task" in task:
                    yield path, job_key, task


# (a) schema validation --------------------------------------------------------------------------

def test_bundle_has_resource_files():
    assert RESOURCE_FILES, "no resources/*.yml found"


@pytest.mark.parametrize("path", BUNDLE_FILES, ids=_rel)
def test_bundle_file_matches_schema(validator, path):
    _assert_valid(validator, _load_yaml(path), _rel(path))


@pytest.mark.parametrize("path", BUNDLE_FILES, ids=_rel)
def test_bundle_file_uses_no_deprecated_field(strict_validator, path):
    _assert_valid(strict_validator, _load_yaml(path), f"{_rel(path)} (deprecated fields rejected)")


def test_every_resource_file_is_included(bundle):
    """The CLI silently ignores a resources file that no `include` glob matches."""
    included = {match for pattern in bundle["include"] for match in PROJECT_ROOT.glob(pattern)}
    missing = [_rel(path) for path in RESOURCE_FILES if path not in included]
    assert not missing, f"not matched by include {bundle['include']}: {missing}"


# (b) targets ------------------------------------------------------------------------------------

def test_targets_are_the_expected_ones(bundle):
    targets = bundle["targets"]
    assert set(targets) == EXPECTED_TARGETS
    assert [name for name, target in targets.items() if target.get("default") is True] == ["dev"]
    # `mode` is a free string in the schema, so check its values here
    assert targets["dev"].get("mode") == "development"
    assert targets["prod"].get("mode") == "production"
    assert all(target.get("mode") in (None, "development", "production") for target in targets.values())


def test_each_target_sets_catalog_to_its_own_name(bundle):
    catalog = bundle["variables"]["catalog"]
    assert "default" not in catalog, "catalog has no default: a target that forgets it must fail, not fall back"
    for name, target in bundle["targets"].items():
        value = (target.get("variables") or {}).get("catalog")
        if isinstance(value, dict):  # long form `catalog: {default: dev}`
            value = value.get("default")
        assert value == name, f"target {name}: variables.catalog is {value!r}, expected {name!r}"


@pytest.mark.parametrize("target", sorted(EXPECTED_TARGETS))
def test_each_target_has_a_hydra_env_with_the_same_catalog(target):
    """Tasks pass env=${bundle.target}: conf/env/<target>.yaml must exist and agree on the catalog."""
    env_file = CONF_DIR / "env" / f"{target}.yaml"
    assert env_file.is_file(), f"{_rel(env_file)} missing"
    assert _load_yaml(env_file).get("catalog") == target


def test_no_hard_coded_workspace_host_or_credentials(bundle):
    sections = {"(top level)": bundle.get("workspace") or {}}
    sections.update({name: target.get("workspace") or {} for name, target in bundle["targets"].items()})
    for name, workspace in sections.items():
        leaked = FORBIDDEN_WORKSPACE_KEYS & set(workspace)
        assert not leaked, f"target {name}: workspace sets {sorted(leaked)}; use DATABRICKS_HOST or a CLI profile"
    for path in BUNDLE_FILES:
        match = SECRET_LIKE.search(path.read_text(encoding="utf-8"))
        assert match is None, f"{_rel(path)} contains a workspace URL or token: {match.group(0)!r}"


# (c) spark_python_task ----------------------------------------------------------------------------

def test_there_are_python_tasks():
    assert list(_python_tasks()), "no spark_python_task in resources/*.yml"


@pytest.mark.parametrize(
    "path, job_key, task",
    [pytest.param(p, j, t, id=f"{p.stem}:{j}:{t['task_key']}") for p, j, t in _python_tasks()],
)
def test_python_task_runs_a_script_with_hydra_overrides(path, job_key, task):
    spark_python_task = task["spark_python_task"]
    script = (path.parent / spark_python_task["python_file"]).resolve()
    assert script.is_file(), f"{spark_python_task['python_file']} (relative to {_rel(path)}) does not exist"
    assert script.parent == SCRIPTS_DIR.resolve(), f"{script} is not in scripts/"

    parameters = spark_python_task.get("parameters") or []
    assert "env=${bundle.target}" in parameters
    bad = [p for p in parameters if not isinstance(p, str) or not HYDRA_OVERRIDE.match(p)]
    assert not bad, f"not a key=value Hydra override: {bad}"
    keys = [p.split("=", 1)[0] for p in parameters]
    assert len(keys) == len(set(keys)), f"duplicate overrides: {keys}"

    # a config-group override (model=repurchase) must name an existing conf/<group>/<option>.yaml
    for parameter in parameters:
        key, value = parameter.split("=", 1)
        if "." in key or not (CONF_DIR / key).is_dir():
            continue
        options = sorted(EXPECTED_TARGETS) if value == "${bundle.target}" else [value]
        for option in options:
            assert (CONF_DIR / key / f"{option}.yaml").is_file(), f"{parameter}: conf/{key}/{option}.yaml missing"


@pytest.mark.parametrize("path", RESOURCE_FILES, ids=_rel)
def test_job_references_resolve(path):
    """What the schema cannot check: depends_on and environment_key point at things that exist."""
    for job_key, job in _jobs(_load_yaml(path)).items():
        task_keys = [task["task_key"] for task in job.get("tasks") or []]
        assert len(task_keys) == len(set(task_keys)), f"{job_key}: duplicate task_key"
        environments = {env["environment_key"] for env in job.get("environments") or []}
        for task in job.get("tasks") or []:
            for dependency in task.get("depends_on") or []:
                assert dependency["task_key"] in task_keys, f"{job_key}.{task['task_key']}: unknown {dependency}"
            if "environment_key" in task:
                assert task["environment_key"] in environments, f"{job_key}.{task['task_key']}: unknown environment"


def test_training_job_chains_the_pipeline_stages_up_to_the_gate():
    job = _training_job(_load_yaml(TRAINING_RESOURCE))
    stages = _load_yaml(CONF_DIR / "config.yaml")["pipeline"]["stages"]
    tasks = job["tasks"]
    # training ends at the gate; scoring and monitoring run on their own schedules
    assert [task["task_key"] for task in tasks] == stages[: stages.index("evaluate") + 1]
    for previous, task in zip(tasks, tasks[1:]):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}]
    assert "depends_on" not in tasks[0]


# (d) the validation has teeth ----------------------------------------------------------------------



def _break_max_concurrent_runs(doc):
    _training_job(doc)["max_concurrent_runs"] = "many"


def _break_python_file_key(doc):
    task = _training_job(doc)["tasks"][0]["spark_python_task"]
    task["python_flie"] = task.pop("python_file")


def _break_pause_status(doc):
    _training_job(doc)["schedule"]["pause_status"] = "SOMETIMES"


def _break_environment_version_type(doc):
    _training_job(doc)["environments"][0]["spec"]["environment_version"] = 2  # must be the string "2"


def _break_parameters_type(doc):
    _training_job(doc)["tasks"][0]["spark_python_task"]["parameters"] = "env=dev model=repurchase"


@pytest.mark.parametrize(
    "break_it, bad_path",
    [
        (_break_max_concurrent_runs, "max_concurrent_runs"),
        (_break_python_file_key, "spark_python_task"),
        (_break_pause_status, "pause_status"),
        (_break_environment_version_type, "environment_version"),
        (_break_parameters_type, "parameters"),
    ],
    ids=lambda value: value.__name__.removeprefix("_break_") if callable(value) else None,
)
def test_invalid_resource_is_rejected(validator, break_it, bad_path):
    doc = copy.deepcopy(_load_yaml(TRAINING_RESOURCE))
    _assert_valid(validator, doc, "unchanged copy")
    break_it(doc)
    errors = list(validator.iter_errors(doc))
    assert errors, f"{break_it.__name__}: the schema accepted an invalid resource"
    assert bad_path in best_match(errors).json_path, _describe(errors, break_it.__name__)


def test_invalid_bundle_root_is_rejected(validator, bundle):
    doc = copy.deepcopy(bundle)
    doc["targets"]["dev"]["default"] = "yes"
    errors = list(validator.iter_errors(doc))
    assert errors and "default" in best_match(errors).json_path


def test_deprecated_client_is_only_caught_by_the_strict_validator(validator, strict_validator):
    """Schema quirk: `client` is deprecated (use `environment_version`) but still valid JSON Schema."""
    doc = copy.deepcopy(_load_yaml(TRAINING_RESOURCE))
    spec = _training_job(doc)["environments"][0]["spec"]
    spec["client"] = spec.pop("environment_version")
    assert not list(validator.iter_errors(doc))
    errors = list(strict_validator.iter_errors(doc))
    assert errors and "client" in best_match(errors).json_path
