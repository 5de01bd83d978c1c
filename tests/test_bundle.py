"""Offline checks of the Databricks Asset Bundle config (no Spark, no network, no Databricks CLI).

databricks.yml and every resources/*.yml are validated against the bundle JSON schema of
databricks/cli v1.13.0 (tests/schemas/, see its README), plus what the schema cannot see:
the target/catalog convention, no hard-coded workspace host or credentials, and that every
spark_python_task runs an existing script with Hydra key=value overrides.
"""

from __future__ import annotations

import copy
import functools
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
# a key (env.catalog=...) or a config group (use_case/source=table)
HYDRA_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*([./][A-Za-z0-9_\-]+)*=\S+$")
# credentials and workspace addresses that must come from the environment or a CLI profile
FORBIDDEN_WORKSPACE_KEYS = {"host", "token", "password", "client_secret", "azure_client_secret"}
SECRET_LIKE = re.compile(
    r"\bdapi[0-9a-f]{32}\b|https://[^\s\"']*\.(cloud\.databricks\.com|azuredatabricks\.net|gcp\.databricks\.com)"
)


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
    leaves = [
        e for e in error.context or [] if not (e.validator == "pattern" and str(e.validator_value).startswith("\\$"))
    ]
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
    """The file's jobs: those of `resources`, and those a target alone defines (a target's entry for
    a job defined under `resources` only overrides fields of it, e.g. a schedule)."""
    jobs = dict(((doc or {}).get("resources") or {}).get("jobs") or {})
    for target in ((doc or {}).get("targets") or {}).values():
        for key, job in ((target.get("resources") or {}).get("jobs") or {}).items():
            if key not in jobs and "tasks" in job:
                jobs[key] = job
    return jobs


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


# (c) jobs: tasks, parameters, references ------------------------------------------------------------


@functools.cache
def _all_jobs() -> dict[str, dict]:
    jobs: dict[str, dict] = {}
    for path in RESOURCE_FILES:
        for key, job in _jobs(_load_yaml(path)).items():
            assert key not in jobs, f"job key {key} defined twice"
            jobs[key] = job
    return jobs


@functools.cache
def _all_resources(kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for path in RESOURCE_FILES:
        found.update(((_load_yaml(path) or {}).get("resources") or {}).get(kind) or {})
    return found


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
    # serverless tasks get the project wheel from their environment
    assert task.get("environment_key"), f"{job_key}.{task['task_key']}: no environment_key"


@functools.cache
def _deployed(target: str):
    """The target as `bundle deploy` would create it (integration_tests/rehearsal.py): every `${...}`
    resolved and the deploy layer's rules applied; a shared target as its Azure DevOps step deploys
    it (that step's BUNDLE_VAR_* and principal), dev by the developer jdoe."""
    from integration_tests.rehearsal import load_as_ci_deploys, load_bundle

    if target == "dev":
        return load_bundle(PROJECT_ROOT, target, user="jdoe@example.com", git_commit="0123abc")
    return load_as_ci_deploys(target, PROJECT_ROOT, git_commit="0123abc")


def _job_runs():
    """(target, job key, job parameters) for the ways a job's python tasks get run on a target: by
    hand with the parameter defaults, and by every run_job_task of the target that calls it with
    parameters of its own (a scheduled pair, the nightly chain). Callers that pass their own job
    parameters through are covered by the caller's runs."""
    for target in sorted(EXPECTED_TARGETS):
        jobs = _deployed(target).jobs
        callers: dict[str, list[dict]] = {key: [] for key in jobs}
        for job in jobs.values():
            for task in job.get("tasks") or []:
                call = task.get("run_job_task") or {}
                parameters = call.get("job_parameters") or {}
                if parameters and not all(str(v).startswith("{{job.parameters.") for v in parameters.values()):
                    callers[_deployed(target).job_ids[call["job_id"]]].append(parameters)
        for job_key, job in jobs.items():
            if not any("spark_python_task" in task for task in job["tasks"]):
                continue
            # by hand (the defaults), then each distinct caller's parameters, in a fixed order (xdist
            # workers must collect the same test ids)
            for parameters in [{}, *(dict(p) for p in sorted({tuple(sorted(c.items())) for c in callers[job_key]}))]:
                yield target, job_key, parameters


def test_all_python_tasks_of_a_job_take_the_same_overrides():
    """So composing one task's overrides checks them all."""
    for job_key, job in _all_jobs().items():
        lists = [task["spark_python_task"]["parameters"] for task in job["tasks"] if "spark_python_task" in task]
        assert all(parameters == lists[0] for parameters in lists), job_key


def test_every_job_parameter_a_task_uses_is_defined_and_every_call_passes_known_ones():
    jobs = _all_jobs()
    for job_key, job in jobs.items():
        defined = {p["name"] for p in job.get("parameters") or []}
        used = set(re.findall(r"\{\{job\.parameters\.(\w+)\}\}", yaml.safe_dump(job.get("tasks"))))
        assert used <= defined, f"{job_key}: tasks use undefined job parameters {sorted(used - defined)}"
        for task in job.get("tasks") or []:
            if "run_job_task" in task:
                called = re.fullmatch(r"\$\{resources\.jobs\.(\w+)\.id\}", task["run_job_task"]["job_id"])
                assert called and called.group(1) in jobs, f"{job_key}.{task['task_key']}: unknown job"
                accepted = {p["name"] for p in jobs[called.group(1)].get("parameters") or []}
                passed = set(task["run_job_task"].get("job_parameters") or {})
                assert passed == accepted, (
                    f"{job_key}.{task['task_key']} passes {sorted(passed)}, job takes {sorted(accepted)}"
                )


def test_every_reference_resolves(bundle):
    """${var.x} is declared, ${resources.<kind>.<key>...} exists, for every bundle file."""
    declared = set(bundle["variables"])
    for path in BUNDLE_FILES:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"\$\{var\.(\w+)\}", text):
            assert name in declared, f"{_rel(path)}: ${{var.{name}}} is not declared in databricks.yml"
        for kind, key in re.findall(r"\$\{resources\.(\w+)\.(\w+)\.\w+\}", text):
            assert key in _all_resources(kind), f"{_rel(path)}: no {kind} named {key}"


@pytest.mark.parametrize(
    "target, job_key, parameters",
    [
        pytest.param(t, j, p, id=f"{t}:{j}:{p['model']}-{p['country']}" if p else f"{t}:{j}:defaults")
        for t, j, p in _job_runs()
    ],
)
def test_job_overrides_compose_with_the_real_conf(target, job_key, parameters):
    """The exact overrides a job run passes give a valid config, naming the bundle's own model and experiment."""
    from integration_tests.rehearsal import job_parameters, task_arguments
    from mlops.config import compose_config, validate_config

    deployed = _deployed(target)
    run = job_parameters(deployed, job_key, parameters)
    python_tasks = [task["task_key"] for task in deployed.jobs[job_key]["tasks"] if "spark_python_task" in task]
    cfg = compose_config(task_arguments(deployed, job_key, python_tasks[0], run))
    validate_config(cfg)
    assert cfg.env.name == target and cfg.env.catalog == target
    # every task reads the target's source table, never the bundled sample
    assert (
        cfg.use_case.source._target_ == "mlops.sources.TableSource"
        and cfg.use_case.source.table == deployed.variables["source_table"]
    )
    assert cfg.lineage.git_commit == "0123abc"
    if not run:  # a job of no pair (the nightly chain's sample load)
        return
    assert (cfg.model.name, cfg.country.code) == (run["model"], run["country"])
    assert cfg.use_case.registered_model == run["registered_model"]
    assert cfg.use_case.experiment == run["experiment"]
    # the experiment lies in the bundle's root path, which the deploy creates (under the deployer's home)
    folder, _, leaf = cfg.use_case.experiment.rpartition("/")
    assert folder == deployed.root_path and folder.startswith(f"/Workspace/Users/{deployed.deployer}/")
    plain = compose_config([f"env={target}", f"model={cfg.model.name}", f"country={cfg.country.code}"])
    if target == "dev":
        assert "dev_jdoe_" in cfg.use_case.registered_model and leaf.startswith("[dev jdoe] ")
    else:
        # outside development mode the model and the experiment's own name are what conf/ would choose
        assert cfg.use_case.registered_model == plain.use_case.registered_model
        assert leaf == plain.use_case.experiment.rpartition("/")[2]


def test_every_configured_model_and_country_has_its_resource_file():
    from mlops.bundle import configured_pairs

    pairs = configured_pairs()
    models = {path.stem for path in (CONF_DIR / "model").glob("*.yaml")}
    countries = {path.stem for path in (CONF_DIR / "country").glob("*.yaml")}
    assert {(p.model, p.country) for p in pairs} == {(m, c) for m in models for c in countries}
    for pair in pairs:
        path = PROJECT_ROOT / "resources" / pair.file_name
        assert path.is_file(), f"{_rel(path)} missing: run `python -m mlops.bundle`"
        jobs = _jobs(_load_yaml(path))
        assert {f"{pair.key}_training", f"{pair.key}_scoring"} == set(jobs)
    assert {"clv-repurchase-classifier-DE.yml", "clv-lifetimevalue-bucket-classifier-DE.yml"} <= {
        path.name for path in RESOURCE_FILES
    }


def test_resources_are_what_the_generator_writes_from_conf():
    from mlops.bundle import stale_files

    assert stale_files() == {}, "resources/ is stale: run `python -m mlops.bundle`"


def test_a_new_country_is_config_only_and_a_stale_file_is_caught(tmp_path):
    """Adding conf/country/IT.yaml makes its files 'missing' until the generator runs, then fresh."""
    import shutil

    from mlops.bundle import main, stale_files

    conf, resources = tmp_path / "conf", tmp_path / "resources"
    shutil.copytree(CONF_DIR, conf)
    shutil.copytree(PROJECT_ROOT / "resources", resources)
    (conf / "country" / "IT.yaml").write_text(
        "code: IT\nsource_value: Italy\nsuffix: it\ntimezone: Europe/Rome\nserved_on: [prod]\n", encoding="utf-8"
    )
    problems = stale_files(resources, conf)
    assert problems["clv-repurchase-classifier-IT.yml"] == "missing"
    assert problems["clv-lifetimevalue-bucket-classifier-IT.yml"] == "missing"
    assert problems["ml-artifacts-resource.yml"] == "stale"
    assert main(["--check", "--conf", str(conf), "--resources", str(resources)]) == 1

    assert main(["--conf", str(conf), "--resources", str(resources)]) == 0
    assert stale_files(resources, conf) == {}
    italy = yaml.safe_load((resources / "clv-repurchase-classifier-IT.yml").read_text(encoding="utf-8"))
    assert "schedule" not in _jobs(italy)["clv_repurchase_it_training"]
    assert list(italy["targets"]) == ["prod"]
    assert (
        italy["targets"]["prod"]["resources"]["jobs"]["clv_repurchase_it_training"]["schedule"]["timezone_id"]
        == "Europe/Rome"
    )

    # a hand edit is stale; a removed country's generated files are flagged, then deleted
    (conf / "country" / "IT.yaml").unlink()
    assert stale_files(resources, conf)["clv-repurchase-classifier-IT.yml"].startswith("not generated")
    main(["--conf", str(conf), "--resources", str(resources)])
    assert not (resources / "clv-repurchase-classifier-IT.yml").exists()
    path = resources / "clv-repurchase-classifier-DE.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("max_concurrent_runs: 1", "max_concurrent_runs: 5"))
    assert stale_files(resources, conf) == {"clv-repurchase-classifier-DE.yml": "stale"}


@pytest.mark.parametrize("job_key", sorted(_all_jobs()))
def test_every_job_is_safe_to_schedule(job_key):
    from zoneinfo import ZoneInfo

    job = _all_jobs()[job_key]
    assert job["max_concurrent_runs"] == 1
    assert job["timeout_seconds"] > 0
    assert job["email_notifications"]["on_failure"] == "${var.failure_emails}"
    assert job["tags"]["git_commit"] == "${bundle.git.commit}"
    if "schedule" in job:
        schedule = job["schedule"]
        ZoneInfo(schedule["timezone_id"])  # a real IANA zone
        fields = schedule["quartz_cron_expression"].split()
        assert len(fields) in (6, 7) and "?" in (fields[3], fields[5]), f"not a quartz cron: {fields}"
    for task in job["tasks"]:
        if "spark_python_task" in task:
            assert task["max_retries"] >= 1 and task["timeout_seconds"] > 0
    environments = job.get("environments") or []
    for environment in environments:
        assert "../dist/*.whl" in environment["spec"]["dependencies"], "the project wheel is not installed"


def test_the_wheel_is_built_from_setup_cfg(bundle):
    artifact = bundle["artifacts"]["ac_mlops_pipeline"]
    assert artifact["type"] == "whl" and artifact["path"] == "."
    assert "pip wheel" in artifact["build"] and "-w dist" in artifact["build"]
    # a new wheel version on every deploy (the CLI's default template does this too), so a job
    # environment never installs the previous code cached under setup.cfg's fixed version
    assert artifact["dynamic_version"] is True
    assert (PROJECT_ROOT / "setup.cfg").is_file()


def test_monitoring_starts_training_through_the_jobs_api_not_task_values():
    """Task values are documented for Python notebooks only: no job reads one, and the monitoring job's
    one task gets the training job's id to start through the Jobs API (mlops.retrain)."""
    jobs = _all_jobs()
    for job_key, job in jobs.items():
        assert "{{tasks." not in yaml.safe_dump(job), f"{job_key} reads a task value"
    tasks = jobs["clv_monitoring_job"]["tasks"]
    assert [task["task_key"] for task in tasks] == ["monitor"]
    assert (
        "monitoring.retrain_job_id=${resources.jobs.clv_model_training_job.id}"
        in (tasks[0]["spark_python_task"]["parameters"])
    )


def test_shared_targets_take_groups_and_identities_from_the_environment(bundle):
    for name in ("staging", "prod", "test"):
        target = bundle["targets"][name]
        assert not {"readers_group", "ml_engineers_group", "service_principal_id"} & set(target.get("variables") or {})
        groups = {entry.get("group_name") for entry in target["permissions"]}
        assert groups == {"${var.readers_group}", "${var.ml_engineers_group}"}
    for path in RESOURCE_FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.findall(r"(?:group_name|principal|user_name|service_principal_name): (\S+)", text):
            assert match.startswith("${var."), f"{_rel(path)}: hard-coded principal {match}"


@pytest.mark.parametrize("target", sorted(EXPECTED_TARGETS))
def test_every_target_deploys_with_one_owner_and_no_shared_root(target):
    """The jobs run as the identity that deploys, which creates and so owns the registered models
    (alias changes need the owner); the root path lies in the deployer's own folder, not
    /Workspace/Shared; the rehearsal's deploy rules raise nothing and warn of nothing."""
    deployed = _deployed(target)
    assert deployed.runs_as == deployed.deployer
    assert deployed.root_path.startswith(f"/Workspace/Users/{deployed.deployer}/.bundle/ac-mlops-pipeline/")
    assert deployed.warnings == []


def test_prod_runs_as_the_principal_that_deploys_it(bundle):
    prod = bundle["targets"]["prod"]
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal_id}"}
    assert prod["workspace"]["root_path"] == (
        "/Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}"
    )


@pytest.mark.parametrize("target", sorted(EXPECTED_TARGETS))
def test_no_unity_catalog_grant_goes_to_a_workspace_local_group(target):
    from mlops.bundle import WORKSPACE_LOCAL_GROUPS

    for kind in ("catalogs", "schemas", "volumes", "registered_models"):
        for key, resource in (_deployed(target).resources.get(kind) or {}).items():
            principals = {grant["principal"] for grant in resource.get("grants") or []}
            assert principals and not {p.casefold() for p in principals} & WORKSPACE_LOCAL_GROUPS, (target, key)
    if target == "dev":  # everyone in the account may use a dev model; the developer, its owner, manages it
        grants = _deployed("dev").resources["registered_models"]["clv_repurchase_de"]["grants"]
        assert grants == [
            {"principal": "account users", "privileges": ["EXECUTE"]},
            {"principal": "jdoe@example.com", "privileges": ["ALL_PRIVILEGES"]},
        ]


def test_the_generator_refuses_a_grant_to_a_workspace_local_group(tmp_path):
    from mlops.bundle import render_all
    from mlops.errors import ConfigError

    root = tmp_path / "databricks.yml"
    root.write_text(
        BUNDLE_ROOT.read_text(encoding="utf-8").replace("readers_group: account users", "readers_group: users"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        render_all(CONF_DIR, root)
    assert raised.value.where == "databricks.yml targets.dev.variables.readers_group"
    assert "'users'" in raised.value.what and "account group" in raised.value.fix


def test_experiments_live_in_the_bundles_root_path_with_the_targets_permissions():
    doc = _load_yaml(PROJECT_ROOT / "resources" / "ml-artifacts-resource.yml")
    for key, experiment in doc["resources"]["experiments"].items():
        assert experiment == {"name": f"${{workspace.root_path}}/{key}"}


# (e) sources, served pairs, the nightly chain, job environments -------------------------------------


def test_every_target_names_its_own_source_table(bundle):
    """No default: a target that forgets its source must fail to deploy, not read another target's."""
    assert "default" not in bundle["variables"]["source_table"]
    for name, target in bundle["targets"].items():
        table = target["variables"]["source_table"]
        assert table.split(".")[0] == name and len(table.split(".")) == 3, f"target {name}: {table!r}"


def _country_config(code: str) -> dict:
    return _load_yaml(CONF_DIR / "country" / f"{code}.yaml")


def test_only_pairs_served_on_a_target_are_scheduled_there(bundle):
    from mlops.bundle import configured_pairs

    nightly = _load_yaml(CONF_DIR / "config.yaml")["deployment"]["nightly_target"]
    for pair in configured_pairs():
        doc = _load_yaml(PROJECT_ROOT / "resources" / pair.file_name)
        assert all("schedule" not in job for job in _jobs(doc).values()), f"{pair.file_name}: scheduled everywhere"
        scheduled = set(doc.get("targets") or {})
        assert scheduled == set(_country_config(pair.country)["served_on"]) - {nightly}, pair.file_name
        assert scheduled <= set(bundle["targets"])
        for target in scheduled:
            jobs = doc["targets"][target]["resources"]["jobs"]
            assert set(jobs) == {f"{pair.key}_training", f"{pair.key}_scoring"}
            assert {job["schedule"]["pause_status"] for job in jobs.values()} == {"UNPAUSED"}
    # the bundled sample the test target loads holds Germany and France only
    assert "test" not in _country_config("GB")["served_on"]
    assert {"test", "staging", "prod"} <= set(_country_config("DE")["served_on"])


def test_the_nightly_chain_covers_every_pair_served_on_the_test_target():
    from mlops.bundle import NIGHTLY_FILE, configured_pairs, job_key

    nightly_job = job_key("clv", "nightly_test")

    doc = _load_yaml(PROJECT_ROOT / "resources" / NIGHTLY_FILE)
    assert list(doc["targets"]) == ["test"] and "resources" not in doc, "the nightly job exists on test only"
    tasks = {task["task_key"]: task for task in doc["targets"]["test"]["resources"]["jobs"][nightly_job]["tasks"]}
    assert tasks["load_sample"]["spark_python_task"]["python_file"] == "../scripts/load_sample.py"
    served = [pair for pair in configured_pairs() if "test" in pair.served_on]
    assert {(pair.model, pair.country) for pair in served} == {
        (model, country) for model in ("repurchase", "ltv_bucket") for country in ("DE", "FR")
    }
    for pair in served:
        train, score, monitor = (tasks[f"{step}_{pair.model}_{pair.country}"] for step in ("train", "score", "monitor"))
        assert train["run_job_task"]["job_id"] == "${resources.jobs.clv_model_training_job.id}"
        assert score["depends_on"] == [{"task_key": train["task_key"]}]
        assert monitor["depends_on"] == [{"task_key": score["task_key"]}]
        # the generic jobs with all their parameters: the pair's own registered model and experiment
        for task in (train, score, monitor):
            assert task["run_job_task"]["job_parameters"] == pair.job_parameters()


def test_job_environments_come_from_the_databricks_extra():
    """One declaration: setup.cfg's `databricks` extra, minus databricks-connect (a serverless job's runtime)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(PROJECT_ROOT / "setup.cfg")
    extra = [line.strip() for line in parser["options.extras_require"]["databricks"].splitlines() if line.strip()]
    assert any(req.startswith("databricks-connect") for req in extra)
    expected = ["../dist/*.whl", *(req for req in extra if not req.startswith("databricks-connect"))]
    environments = [env for job in _all_jobs().values() for env in job.get("environments") or []]
    assert environments and all(env["spec"]["dependencies"] == expected for env in environments)
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "-e '.[databricks,dev]'" in readme, "the README's IDE path installs the extra"


def _conf_serving_france_on(tmp_path: Path, served_on: str) -> Path:
    """A copy of conf/ in which France is served on other targets."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    country = conf / "country" / "FR.yaml"
    country.write_text(
        country.read_text(encoding="utf-8").replace("served_on: [test, staging, prod]", f"served_on: {served_on}"),
        encoding="utf-8",
    )
    return conf


def test_a_served_target_the_bundle_lacks_is_refused(tmp_path):
    from mlops.bundle import render_all
    from mlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\['qa'\] are not targets.*FR.yaml served_on"):
        render_all(_conf_serving_france_on(tmp_path, "[test, qa]"))


def test_serving_a_country_somewhere_else_makes_its_files_stale(tmp_path):
    from mlops.bundle import NIGHTLY_FILE, stale_files

    conf = _conf_serving_france_on(tmp_path, "[prod]")
    assert stale_files(conf_dir=conf) == {
        "clv-repurchase-classifier-FR.yml": "stale",
        "clv-lifetimevalue-bucket-classifier-FR.yml": "stale",
        NIGHTLY_FILE: "stale",
    }


def test_lakehouse_monitoring_is_off_by_default_and_schema_valid_when_on(validator, tmp_path):
    import shutil

    from mlops.bundle import LAKEHOUSE_MONITORING_FILE, render_all

    assert not (PROJECT_ROOT / "resources" / LAKEHOUSE_MONITORING_FILE).exists()
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    config = conf / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("    targets: []", "    targets: [prod]"), encoding="utf-8"
    )
    doc = yaml.safe_load(render_all(conf)[LAKEHOUSE_MONITORING_FILE])
    _assert_valid(validator, doc, LAKEHOUSE_MONITORING_FILE)
    monitors = doc["targets"]["prod"]["resources"]["quality_monitors"]
    assert set(monitors) == {
        f"clv_{model}_{country}_predictions" for model in ("repurchase", "ltv_bucket") for country in ("de", "fr", "gb")
    }
    monitor = monitors["clv_repurchase_gb_predictions"]
    assert monitor["table_name"] == "${var.catalog}.${var.schema}.clv_repurchase_predictions_gb"
    log = monitor["inference_log"]
    assert (log["problem_type"], log["granularities"], log["timestamp_col"], log["model_id_col"]) == (
        "PROBLEM_TYPE_CLASSIFICATION",
        ["1 day"],
        "scored_at",
        "model_version",
    )


# (d) the validation has teeth ----------------------------------------------------------------------


def _break_max_concurrent_runs(doc):
    _training_job(doc)["max_concurrent_runs"] = "many"


def _break_python_file_key(doc):
    task = _training_job(doc)["tasks"][1]["spark_python_task"]  # tasks[0] runs the extract job
    task["python_flie"] = task.pop("python_file")


def _break_pause_status(doc):
    _training_job(doc)["schedule"] = {
        "quartz_cron_expression": "0 0 3 * * ?",
        "timezone_id": "UTC",
        "pause_status": "SOMETIMES",
    }


def _break_environment_version_type(doc):
    _training_job(doc)["environments"][0]["spec"]["environment_version"] = 2  # must be the string "2"


def _break_parameters_type(doc):
    _training_job(doc)["tasks"][1]["spark_python_task"]["parameters"] = "env=dev model=repurchase"


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
