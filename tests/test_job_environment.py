"""The jobs' environment as the rehearsal rebuilds it (integration_tests/job_environment.py): what the
bundle syncs, how a job's dependencies resolve, and one serverless version named everywhere."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess

import pytest
import yaml

from integration_tests.job_environment import (
    REPO,
    SERVERLESS,
    _pattern,
    resolve_dependencies,
    synced_copy,
    synced_files,
    wheel_requirements,
)


def test_one_serverless_version_in_the_bundle_the_extra_and_the_rehearsal():
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text(encoding="utf-8"))
    version = bundle["variables"]["serverless_environment_version"]["default"]
    assert version in SERVERLESS, f"the rehearsal does not know serverless version {version}"
    base_connect = next(req for req in SERVERLESS[version].base if req.startswith("databricks-connect=="))
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    extra = [line.strip() for line in parser["options.extras_require"]["databricks"].splitlines() if line.strip()]
    declared = next(req for req in extra if req.startswith("databricks-connect"))
    # the extra's range admits exactly the serverless version's Databricks Connect minor
    minor = re.search(r"==(\d+\.\d+)\.\*", base_connect).group(1)
    major, low = minor.split(".")
    assert declared == f"databricks-connect>={minor},<{major}.{int(low) + 1}", (declared, base_connect)
    assert SERVERLESS[version].python in parser["metadata"]["classifiers"]


@pytest.mark.parametrize(
    "pattern, path, excluded",
    [
        (".venv/**", ".venv/lib/x.py", True),
        (".venv/**", "lib/.venv/x.py", False),
        ("**/__pycache__/**", "lib/mlops/__pycache__/x.pyc", True),
        ("*.egg-info/**", "ac_mlops.egg-info/PKG-INFO", True),
        (".coverage", "sub/.coverage", True),
        ("derby.log", "derby.logs", False),
    ],
)
def test_sync_excludes_match_as_gitignore_patterns(pattern, path, excluded):
    assert bool(_pattern(pattern).fullmatch(path)) is excluded


def test_the_synced_files_are_the_projects_own_and_nothing_local(tmp_path):
    files = synced_files()
    assert {
        "databricks.yml",
        "setup.cfg",
        "scripts/train.py",
        "conf/config.yaml",
        "lib/mlops/log4j2.properties",
    } <= set(files)
    assert not [
        f for f in files if f.startswith((".venv/", ".local/", ".databricks/", "mlruns/")) or "__pycache__" in f
    ]
    with pytest.raises(ValueError, match="inside the checkout"):
        synced_copy(REPO / "build" / "synced")


def test_a_file_git_ignores_is_not_synced(tmp_path):
    repo = tmp_path / "bundle"
    repo.mkdir()
    (repo / "databricks.yml").write_text("bundle: {name: x}\nsync: {exclude: [notes/**]}\n", encoding="utf-8")
    (repo / ".gitignore").write_text("secret.txt\n", encoding="utf-8")
    for name in ("kept.py", "secret.txt", "notes/todo.md"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x", encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert synced_files(repo) == [".gitignore", "databricks.yml", "kept.py"]
    copy = synced_copy(tmp_path / "copy", repo)
    assert sorted(p.name for p in copy.rglob("*") if p.is_file()) == [".gitignore", "databricks.yml", "kept.py"]


def test_a_job_dependency_glob_that_matches_nothing_fails_as_the_deploy_does(tmp_path):
    (tmp_path / "resources").mkdir()
    with pytest.raises(FileNotFoundError, match="../dist/\\*.whl: no file matches"):
        resolve_dependencies(["../dist/*.whl", "databricks-sdk>=0.40,<1"], tmp_path / "resources")
    (tmp_path / "dist").mkdir()
    wheel = tmp_path / "dist" / "x-1.0-py3-none-any.whl"
    shutil.make_archive(str(wheel.with_suffix("")), "zip", tmp_path / "resources")
    wheel.with_suffix(".zip").rename(wheel)
    wheels, requirements = resolve_dependencies(["../dist/*.whl", "databricks-sdk>=0.40,<1"], tmp_path / "resources")
    assert wheels == [wheel.resolve()] and requirements == ["databricks-sdk>=0.40,<1"]


def test_a_wheels_requirements_come_from_its_metadata(tmp_path):
    import zipfile

    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "p-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: p\nVersion: 1.0\nRequires-Dist: mlflow<4,>=3.4\n"
            'Requires-Dist: pytest; extra == "dev"\nRequires-Dist: pandas<3,>=2.2\n',
        )
    assert wheel_requirements(wheel) == ["mlflow<4,>=3.4", "pandas<3,>=2.2"]
