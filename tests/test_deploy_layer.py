"""The bundle rehearsal's deploy layer: for each rule `bundle deploy` or the workspace applies, a
deliberately broken copy of the bundle fails (or warns) naming the file and the key.

The rules live in integration_tests/rehearsal.py (`_variables`, `_DeployLayer`), each with the CLI
source file or doc page it follows; the real bundle passes all of them on every target
(tests/test_bundle.py). No Spark, no network: these load YAML only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from integration_tests.rehearsal import (
    REPO,
    RehearsalError,
    deploy_environment,
    load_as_ci_deploys,
    load_bundle,
)

ML_ARTIFACTS = "resources/ml-artifacts-resource.yml"


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """databricks.yml, resources/ and the Azure pipelines in a scratch folder, to break one of them."""
    shutil.copy(REPO / "databricks.yml", tmp_path / "databricks.yml")
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    shutil.copytree(REPO / ".azure", tmp_path / ".azure")
    for folder in ("scripts", "conf", "lib"):
        (tmp_path / folder).symlink_to(REPO / folder)
    return tmp_path


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def refused(call) -> RehearsalError:
    with pytest.raises(RehearsalError) as raised:
        call()
    return raised.value


# -- folders ---------------------------------------------------------------------------------------


def test_an_experiment_in_a_folder_no_one_creates_fails(bundle_copy):
    """The shipped layout before this rule: /Shared/ac-mlops/<target>/... exists on no fresh workspace."""
    edit(
        bundle_copy,
        ML_ARTIFACTS,
        "name: ${workspace.root_path}/clv_repurchase_de",
        "name: /Shared/ac-mlops/${bundle.target}/clv_repurchase_de",
    )
    error = refused(lambda: load_as_ci_deploys("staging", bundle_copy))
    assert (error.file, error.key) == (ML_ARTIFACTS, "resources.experiments.clv_repurchase_de.name")
    assert "Parent directory /Shared/ac-mlops/staging does not exist" in error.what


def test_an_experiment_in_a_subfolder_of_the_root_path_fails_but_the_root_path_itself_is_there(bundle_copy):
    # the deploy makes root_path/files (and so root_path), never root_path/experiments
    edit(
        bundle_copy,
        ML_ARTIFACTS,
        "name: ${workspace.root_path}/clv_repurchase_fr",
        "name: ${workspace.root_path}/experiments/clv_repurchase_fr",
    )
    error = refused(lambda: load_bundle(bundle_copy, "dev", user="jdoe@example.com"))
    assert (error.file, error.key) == (ML_ARTIFACTS, "resources.experiments.clv_repurchase_fr.name")
    assert "/Users/jdoe@example.com/.bundle/ac-mlops-pipeline/dev/experiments does not exist" in error.what


def test_a_person_may_keep_experiments_in_their_home_a_principal_only_in_its_root_path(bundle_copy):
    """A person's home exists; a service principal's is not documented to exist before its first
    deploy, so only its root path (and that path's ancestors) count: the stricter reading."""
    edit(
        bundle_copy,
        ML_ARTIFACTS,
        "name: ${workspace.root_path}/clv_repurchase_de",
        "name: /Users/${workspace.current_user.userName}/clv_repurchase_de",
    )
    assert load_bundle(bundle_copy, "dev", user="jdoe@example.com").warnings == []
    # a principal's home is an ancestor of its default root path, which the deploy creates
    assert load_as_ci_deploys("staging", bundle_copy).warnings == []
    edit(
        bundle_copy,
        ML_ARTIFACTS,
        "name: ${workspace.root_path}/clv_repurchase_fr",
        "name: /Users/${workspace.current_user.userName}/models/clv_repurchase_fr",
    )
    error = refused(lambda: load_as_ci_deploys("staging", bundle_copy))
    assert error.key == "resources.experiments.clv_repurchase_fr.name"


MONITORS = """
targets:
  prod:
    resources:
      quality_monitors:
        clv_repurchase_de_predictions:
          table_name: ${var.catalog}.${var.schema}.clv_repurchase_predictions_de
          output_schema_name: ${var.catalog}.${var.schema}
          assets_dir: ASSETS_DIR
          inference_log:
            granularities: ["1 day"]
            model_id_col: model_version
            prediction_col: prediction
            problem_type: PROBLEM_TYPE_CLASSIFICATION
            timestamp_col: scored_at
"""


def test_a_monitors_assets_dir_needs_an_existing_parent(bundle_copy):
    """The sources are silent on whether a monitor creates a missing parent: the stricter reading."""
    monitors = bundle_copy / "resources" / "lakehouse-monitoring-resource.yml"
    monitors.write_text(MONITORS.replace("ASSETS_DIR", "${workspace.root_path}/monitoring/de"), encoding="utf-8")
    error = refused(lambda: load_as_ci_deploys("prod", bundle_copy))
    assert (error.file, error.key) == (
        "resources/lakehouse-monitoring-resource.yml",
        "targets.prod.resources.quality_monitors.clv_repurchase_de_predictions.assets_dir",
    )
    monitors.write_text(MONITORS.replace("ASSETS_DIR", "${workspace.root_path}/monitoring_de"), encoding="utf-8")
    assert load_as_ci_deploys("prod", bundle_copy).resources["quality_monitors"]


def test_the_generated_monitors_deploy_on_prod(bundle_copy, tmp_path):
    """What `deployment.lakehouse_monitoring.targets: [prod]` generates passes every deploy rule."""
    from mlops.bundle import LAKEHOUSE_MONITORING_FILE, render_all

    conf = tmp_path / "conf_with_monitors"
    shutil.copytree(REPO / "conf", conf)
    config = conf / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("    targets: []", "    targets: [prod]"), encoding="utf-8"
    )
    (bundle_copy / "resources" / LAKEHOUSE_MONITORING_FILE).write_text(
        render_all(conf)[LAKEHOUSE_MONITORING_FILE], encoding="utf-8"
    )
    deployed = load_as_ci_deploys("prod", bundle_copy)
    assert len(deployed.resources["quality_monitors"]) == 6 and deployed.warnings == []


# -- grants ----------------------------------------------------------------------------------------


def test_a_grant_to_the_workspace_group_users_fails_where_the_value_was_set(bundle_copy):
    edit(bundle_copy, "databricks.yml", "readers_group: account users", "readers_group: users")
    error = refused(lambda: load_bundle(bundle_copy, "dev", user="jdoe@example.com"))
    assert (error.file, error.key) == ("databricks.yml", "targets.dev.variables.readers_group")
    assert "workspace-local group" in error.what and "clv_" in error.what


def test_a_grant_to_admins_from_the_pipelines_variable_group_fails(bundle_copy):
    environ = {**deploy_environment("staging", bundle_copy), "BUNDLE_VAR_ml_engineers_group": "admins"}
    error = refused(lambda: load_bundle(bundle_copy, "staging", environ=environ, user=environ["DATABRICKS_CLIENT_ID"]))
    assert (error.file, error.key) == ("(environment)", "BUNDLE_VAR_ml_engineers_group")


def test_a_grant_written_into_a_resource_fails_at_the_grant(bundle_copy):
    edit(bundle_copy, ML_ARTIFACTS, "principal: ${var.readers_group}", "principal: users")
    error = refused(lambda: load_as_ci_deploys("test", bundle_copy))
    assert (error.file, error.key) == (
        ML_ARTIFACTS,
        "resources.registered_models.clv_ltv_bucket_de.grants[0].principal",
    )


# -- ownership -------------------------------------------------------------------------------------


def test_prod_deployed_by_someone_its_jobs_do_not_run_as_fails(bundle_copy):
    """The deployer owns the registered models; jobs running as another principal cannot move aliases."""
    environ = deploy_environment("prod", bundle_copy)
    error = refused(lambda: load_bundle(bundle_copy, "prod", environ=environ, user="jdoe@example.com"))
    assert (error.file, error.key) == ("databricks.yml", "targets.prod.run_as")
    assert "only their owner (or a metastore admin) may set or delete" in error.what


def test_a_pipeline_that_runs_prod_as_another_principal_than_it_deploys_with_fails(bundle_copy):
    # the prod deploy step takes the run_as principal from a group variable instead of its own identity
    path = bundle_copy / ".azure" / "devops-pipelines" / "ac-mlops-pipeline-bundle-cicd.yml"
    head, marker, prod = path.read_text(encoding="utf-8").partition("  - stage: deploy_prod")
    mapped = "BUNDLE_VAR_service_principal_id: $(DATABRICKS_CLIENT_ID)"
    assert mapped in prod
    prod = prod.replace(mapped, "BUNDLE_VAR_service_principal_id: $(PROD_JOBS_PRINCIPAL)")
    path.write_text(head + marker + prod, encoding="utf-8")
    error = refused(lambda: load_as_ci_deploys("prod", bundle_copy))
    assert (error.file, error.key) == ("databricks.yml", "targets.prod.run_as")


def test_monitors_with_a_run_as_other_than_the_deployer_fail_as_the_cli_refuses_them(bundle_copy):
    (bundle_copy / "resources" / "lakehouse-monitoring-resource.yml").write_text(
        MONITORS.replace("ASSETS_DIR", "${workspace.root_path}/monitoring_de"), encoding="utf-8"
    )
    environ = deploy_environment("prod", bundle_copy)
    error = refused(lambda: load_bundle(bundle_copy, "prod", environ=environ, user="jdoe@example.com"))
    assert (error.file, error.key) == ("databricks.yml", "targets.prod.run_as")
    assert "quality_monitors do not support" in error.what


def test_run_as_with_no_identity_fails(bundle_copy):
    environ = {**deploy_environment("prod", bundle_copy), "BUNDLE_VAR_service_principal_id": ""}
    error = refused(lambda: load_bundle(bundle_copy, "prod", environ=environ, user=environ["DATABRICKS_CLIENT_ID"]))
    assert (error.file, error.key) == ("databricks.yml", "targets.prod.run_as")
    assert "must specify exactly one identity" in error.what


# -- variables -------------------------------------------------------------------------------------


def test_a_complex_variable_from_the_environment_fails(bundle_copy):
    environ = {**deploy_environment("test", bundle_copy), "BUNDLE_VAR_failure_emails": '["ops@example.com"]'}
    error = refused(lambda: load_bundle(bundle_copy, "test", environ=environ, user=environ["DATABRICKS_CLIENT_ID"]))
    assert (error.file, error.key) == ("(environment)", "BUNDLE_VAR_failure_emails")
    assert "not supported for complex variable failure_emails" in error.what


def test_a_complex_variable_from_the_command_line_fails(bundle_copy):
    error = refused(lambda: load_as_ci_deploys("test", bundle_copy, variables={"failure_emails": "ops@example.com"}))
    assert (error.file, error.key) == ("(command line)", "--var failure_emails")


def test_a_complex_variable_from_the_overrides_file_works_and_a_plain_value_there_fails(bundle_copy):
    overrides = bundle_copy / ".databricks" / "bundle" / "test" / "variable-overrides.json"
    overrides.parent.mkdir(parents=True)
    overrides.write_text(json.dumps({"failure_emails": ["ops@example.com"]}), encoding="utf-8")
    deployed = load_as_ci_deploys("test", bundle_copy)
    assert deployed.jobs["clv_model_training_job"]["email_notifications"]["on_failure"] == ["ops@example.com"]
    overrides.write_text(json.dumps({"failure_emails": "ops@example.com"}), encoding="utf-8")
    error = refused(lambda: load_as_ci_deploys("test", bundle_copy))
    assert (error.file, error.key) == (".databricks/bundle/test/variable-overrides.json", "failure_emails")
    assert "of type complex" in error.what


def test_a_complex_variable_set_per_target_in_databricks_yml_works(bundle_copy):
    edit(
        bundle_copy,
        "databricks.yml",
        "      source_table: staging.clv.clv_source_transactions\n",
        "      source_table: staging.clv.clv_source_transactions\n      failure_emails: [ops@example.com]\n",
    )
    deployed = load_as_ci_deploys("staging", bundle_copy)
    assert deployed.jobs["clv_model_training_job"]["email_notifications"]["on_failure"] == ["ops@example.com"]


def test_no_pipeline_step_sets_a_complex_variable_from_the_environment():
    declared = yaml.safe_load((REPO / "databricks.yml").read_text(encoding="utf-8"))["variables"]
    complex_variables = {name for name, spec in declared.items() if (spec or {}).get("type") == "complex"}
    assert complex_variables == {"failure_emails"}
    for target in ("staging", "prod", "test"):
        names = {
            name.removeprefix("BUNDLE_VAR_") for name in deploy_environment(target) if name.startswith("BUNDLE_VAR_")
        }
        assert names and not names & complex_variables, target


# -- root path -------------------------------------------------------------------------------------


def test_a_root_path_in_workspace_shared_warns(bundle_copy):
    edit(
        bundle_copy,
        "databricks.yml",
        "root_path: /Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}",
        "root_path: /Workspace/Shared/.bundle/${bundle.name}/${bundle.target}",
    )
    deployed = load_as_ci_deploys("prod", bundle_copy)
    (warning,) = deployed.warnings
    assert (warning.file, warning.key) == ("databricks.yml", "targets.prod.workspace.root_path")
    assert "writable by all workspace users" in warning.what


def test_production_mode_without_a_root_path_or_run_as_fails(bundle_copy):
    path = bundle_copy / "databricks.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    del doc["targets"]["prod"]["workspace"], doc["targets"]["prod"]["run_as"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    error = refused(
        lambda: load_bundle(bundle_copy, "prod", environ=deploy_environment("prod"), user="jdoe@example.com")
    )
    assert (error.file, error.key) == ("databricks.yml", "targets.prod.workspace.root_path")
