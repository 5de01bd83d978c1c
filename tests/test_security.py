"""Security guards: no secret in the repository, Databricks auth only from outside it, no secret in
logs, and models loaded only from the configured registry and experiment."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import DictConfig, OmegaConf
from sklearn.linear_model import LogisticRegression

from mlops import registry
from mlops.config import compose_config
from mlops.errors import ConfigError
from mlops.models import ScoredModel
from mlops.redact import RedactingStream, redact, redacted_config, redacted_output
from mlops.registry import (
    configure_mlflow,
    load_sklearn_model,
    log_sklearn_model,
    model_versions,
    register_run_model,
    registered_model_name,
    set_alias,
)
from mlops.targets import BinaryTarget, target_to_dict
from tests.conftest import local_config
from tests.fakes.uc_registry import mlflow_uris_restored
from tests.timing import timed

REPO = Path(__file__).resolve().parents[1]

# ---- the secret scanner ----------------------------------------------------------------------------

# What is committed and deployed: configs, bundle resources, pipelines, docs, entry points, the library.
SCANNED_ROOTS = (
    "conf",
    "resources",
    ".azure",
    "databricks.yml",
    "README.md",
    "scripts",
    "lib",
    ".ci",
    "Makefile",
    "pyproject.toml",
    "setup.cfg",
)
SKIPPED_DIRS = {"__pycache__"}

_WORKSPACE_DOMAINS = r"(?:azuredatabricks\.net|cloud\.databricks\.com|gcp\.databricks\.com)"
SECRET_SHAPES = {
    "Databricks personal access token": re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),
    "Databricks OAuth secret": re.compile(r"\bdose[0-9a-f]{32}\b"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    "Azure storage account key": re.compile(r"AccountKey=[A-Za-z0-9+/]{40,}"),
    "Azure SAS signature": re.compile(r"[?&]sig=[A-Za-z0-9%+/]{30,}"),
    "Azure AD client secret": re.compile(r"(?<![\w~.-])[\w~.-]{3}\dQ~[\w~.-]{31,34}(?![\w~.-])"),
    "Azure DevOps personal access token": re.compile(r"\b[a-z2-7]{52}\b"),
    "private key or certificate": re.compile(r"-----BEGIN[A-Z0-9 ]*-----"),
    "Databricks workspace URL": re.compile(rf"(?:https?://)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.{_WORKSPACE_DOMAINS}"),
}

_SECRET_KEY = r"[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*"
# key: value / key=value / "key": value in YAML, shell, ini, Markdown, JSON
_ASSIGNMENT = re.compile(rf"""(?i)(?<![\w.-])["'`]?(?P<key>{_SECRET_KEY})["'`]?\s*(?::|=(?!=))\s*(?P<value>.*)""")
# in Python only a string literal is a value; `page_token = page.token` is code, not a secret
_PY_ASSIGNMENT = re.compile(
    rf"""(?i)(?<![\w.-])["']?(?P<key>{_SECRET_KEY})["']?\s*(?::\s*[\w\[\]|., ]+?\s*)?"""
    r"""(?::|=(?!=))\s*[rbuf]?(?P<quote>["'])(?P<value>.*?)(?P=quote)"""
)
# values that name a secret instead of holding one
_REFERENCE = re.compile(
    r"""
    \$\([\w.]+\)               # Azure DevOps macro $(DATABRICKS_CLIENT_SECRET)
  | \$\{\{.*?\}\}              # template expression ${{ variables.x }}
  | \$\{[^}]+\}                # bundle variable ${var.x}, shell ${X}, OmegaConf ${oc.env:X}
  | \$[A-Za-z_]\w*             # shell variable $X
  | \{\{[^}]+\}\}              # Databricks secret reference {{secrets/scope/key}}, job parameters
  | <[^>]+>                    # a documented placeholder <your token>
  | [A-Z][A-Z0-9_]*(?![\w-])   # an environment variable's name
""",
    re.VERBOSE,
)
_EMPTY = re.compile(r"""(?i)(?:["'`]{0,2}|null|none|~|true|false)(?:[\s,;)`]|#|$)""")
# keys that name or locate a secret rather than hold it: secret_scope, token_env, password_file, token_url
_NAMING_KEY = re.compile(r"(?i)[_.-](?:scope|name|env|var|variable|file|path|url|uri|id|type|kind|ttl|lifetime)$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    excerpt: str  # masked: a failing test must not print the secret into the CI log


def _mask(text: str) -> str:
    return text[:6] + "…" if len(text) > 6 else text


def _literal_assignment(line: str, is_python: bool) -> tuple[str, str] | None:
    """(key, value) when a secret-named key is assigned a literal, not a reference or an empty value."""
    for match in (_PY_ASSIGNMENT if is_python else _ASSIGNMENT).finditer(line):
        if _NAMING_KEY.search(match.group("key")):
            continue
        value = match.group("value").strip()
        if is_python:
            if value and not _REFERENCE.fullmatch(value):
                return match.group("key"), value
            continue
        if _EMPTY.match(value) or _REFERENCE.match(value.lstrip("\"'`")):
            continue
        return match.group("key"), value
    return None


def scan_text(path: str, text: str) -> list[Finding]:
    """Every secret shape, and every secret-named key holding a literal value, in one file's text."""
    findings = []
    is_python = path.endswith(".py")
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in SECRET_SHAPES.items():
            for match in pattern.finditer(line):
                findings.append(Finding(path, number, kind, _mask(match.group(0))))
        assignment = _literal_assignment(line, is_python)
        if assignment:
            key, value = assignment
            findings.append(Finding(path, number, f"literal value for {key!r}", _mask(value)))
    return findings


def text_files(repo: Path, roots: tuple[str, ...]) -> Iterator[Path]:
    """Files under the roots that are text (binary files, e.g. the gzipped sample, are skipped)."""
    for root in roots:
        top = repo / root
        candidates = [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []
        for path in candidates:
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(repo).parts):
                head = path.read_bytes()[:8192]
                if b"\0" not in head and not head.startswith(b"\x1f\x8b"):
                    yield path


def scan_repository(repo: Path, roots: tuple[str, ...] = SCANNED_ROOTS) -> tuple[list[Path], list[Finding]]:
    files = list(text_files(repo, roots))
    findings = [
        finding
        for path in files
        for finding in scan_text(str(path.relative_to(repo)), path.read_text(encoding="utf-8", errors="replace"))
    ]
    return files, findings


def test_the_repository_holds_no_credential_token_or_workspace_url():
    files, findings = scan_repository(REPO)
    assert findings == []
    # the scan really read each place (a renamed folder would otherwise make it pass on nothing)
    scanned = {str(path.relative_to(REPO)) for path in files}
    assert {
        "databricks.yml",
        "README.md",
        "conf/env/prod.yaml",
        "scripts/train.py",
        "lib/mlops/registry.py",
        ".azure/devops-pipelines/ac-mlops-pipeline-bundle-cicd.yml",
        "resources/model-workflow-resource.yml",
    } <= scanned
    assert all(not name.endswith(".gz") for name in scanned)


# built at run time so this file holds no token-shaped string itself
FAKE_PAT = "dapi" + "0123456789abcdef" * 2
PLANTED = {
    f"token: {FAKE_PAT}": "Databricks personal access token",
    f"export DATABRICKS_TOKEN={FAKE_PAT}": "Databricks personal access token",
    "client_secret: dose" + "a1b2c3d4" * 4: "Databricks OAuth secret",
    "aws_access_key_id = AKIA" + "ABCDEFGHIJKLMNOP": "AWS access key id",
    "auth: ghp_" + "a1B2c3D4e5" * 4: "GitHub token",
    "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + "Ab3+" * 22: "Azure storage account key",
    "azure_client_credential: Abc8Q~" + "x" * 34: "Azure AD client secret",
    "-----BEGIN " + "OPENSSH PRIVATE KEY-----": "private key or certificate",
    "host: https://adb-1234567890123456.7." + "azuredatabricks.net": "Databricks workspace URL",
    "workspace_url = dbc-a1b2c3d4-e5f6." + "cloud.databricks.com": "Databricks workspace URL",
    "see https://1234567890123456.7.gcp." + "databricks.com/?o=1": "Databricks workspace URL",
    "password: hunter2": "literal value for 'password'",
    "  DATABRICKS_CLIENT_SECRET: 's3cr3t-value'": "literal value for 'DATABRICKS_CLIENT_SECRET'",
    '{"api_key": "k-123456"}': "literal value for 'api_key'",
}


@pytest.mark.parametrize("line,kind", PLANTED.items(), ids=list(PLANTED.values()))
def test_the_scanner_finds_a_planted_secret(tmp_path, line, kind):
    planted = tmp_path / "conf" / "env" / "leaky.yaml"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"# an innocent header\nname: leaky\n{line}\n")
    files, findings = scan_repository(tmp_path, ("conf",))
    assert files == [planted]
    assert kind in {finding.kind for finding in findings if finding.line == 3}
    assert all(FAKE_PAT not in finding.excerpt for finding in findings)  # masked in the report


def test_the_scanner_finds_a_literal_in_python_but_not_code(tmp_path):
    module = tmp_path / "lib" / "settings.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        f'TOKEN = "{FAKE_PAT}"\nclient = connect(password="hunter2")\npage_token = page.token\n'
        'token: str | None = None\nsecret = os.environ["DATABRICKS_CLIENT_SECRET"]\n'
    )
    _, findings = scan_repository(tmp_path, ("lib",))
    assert {(finding.line, finding.kind) for finding in findings} == {
        (1, "Databricks personal access token"),
        (1, "literal value for 'TOKEN'"),
        (2, "literal value for 'password'"),
    }


REFERENCES = [
    "DATABRICKS_CLIENT_SECRET: $(DATABRICKS_CLIENT_SECRET)",
    "token: ${var.databricks_token}",
    "client_secret: ${{ secrets.DATABRICKS_CLIENT_SECRET }}",
    "password: ${oc.env:DB_PASSWORD,null}",
    "token: {{secrets/clv/databricks_token}}",
    "secret_env: DATABRICKS_CLIENT_SECRET",
    "token:",
    "token: null",
    "password: ''",
    "client_secret: <an OAuth secret of the service principal>",
    "export DATABRICKS_TOKEN=$TOKEN_FROM_VAULT",
    "mark `DATABRICKS_CLIENT_SECRET` as secret:",
    'token: "DATABRICKS_TOKEN"',
    "secret_scope: clv",
    "token_url: https://login.microsoftonline.com/common/oauth2/token",
]


@pytest.mark.parametrize("line", REFERENCES)
def test_the_scanner_lets_references_to_secrets_pass(line):
    assert scan_text("pipeline.yml", line) == []


# ---- Databricks auth comes from the environment or a CLI profile, never from config --------------

ENV_NAMES = sorted(path.stem for path in (REPO / "conf" / "env").glob("*.yaml"))
CREDENTIAL_KEY = re.compile(r"(?i)^(?:host|.*token|.*password|.*passwd|.*client_secret|.*secret)$")


def credential_keys(tree: Any, path: str = "") -> list[str]:
    """Dotted paths of every credential-named key in a config tree, at any depth (lists included)."""
    if isinstance(tree, dict):
        return [
            found
            for key, value in tree.items()
            for found in ([f"{path}{key}"] if CREDENTIAL_KEY.match(str(key)) else [])
            + credential_keys(value, f"{path}{key}.")
        ]
    if isinstance(tree, list):
        return [found for index, value in enumerate(tree) for found in credential_keys(value, f"{path}{index}.")]
    return []


def test_the_credential_key_walk_finds_nested_keys():
    tree = {
        "env": {
            "spark": {"conf": {"spark.databricks.token": "x"}},
            "jobs": [{"db": {"password": "y"}}],
            "mlflow": {"host": "z"},
            "hosting": "fine",
            "tokenizer": "fine",
        }
    }
    assert sorted(credential_keys(tree)) == [
        "env.jobs.0.db.password",
        "env.mlflow.host",
        "env.spark.conf.spark.databricks.token",
    ]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_no_env_config_carries_a_databricks_host_or_credential(env):
    assert {"local", "dev", "staging", "prod", "test"} <= set(ENV_NAMES)
    cfg = compose_config([f"env={env}"])
    assert credential_keys(OmegaConf.to_container(cfg, resolve=False)) == []
    if cfg.env.spark._target_ == "mlops.worlds.DatabricksSpark":
        # the way in is a CLI profile (or DATABRICKS_* variables): config may name the profile, nothing more
        assert "profile" in cfg.env.spark


# ---- logs leak nothing ---------------------------------------------------------------------------


@timed("a script in a process of its own")
def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.fixture
def databricks_secrets(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Fresh, random credentials in the environment, as a CI agent or a laptop with exported ones has."""
    token, client_secret = "dapi" + secrets.token_hex(16), "dose" + secrets.token_hex(16)
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1111111111111111.11.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", token)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", client_secret)
    return token, client_secret


def assert_no_secret(output: str, values: tuple[str, ...]) -> None:
    for value in values:
        assert value not in output and value[4:] not in output, "a credential from the environment reached the logs"


def test_a_failing_databricks_run_logs_no_credential(tmp_path, databricks_secrets):
    # debug logging for every logger: the most a run prints, including the error path
    result = run_script("train.py", "env=dev", "hydra.verbose=true", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "databricks-connect is not installed" in result.stderr
    assert " DEBUG " in result.stderr  # the debug logs were on, so their silence about secrets means something
    assert_no_secret(result.stdout + result.stderr, databricks_secrets)


def test_the_resolved_config_shows_no_credential(tmp_path, databricks_secrets):
    result = run_script("train.py", "env=dev", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered_model: dev.clv.clv_repurchase_de" in result.stdout  # the config was really printed
    assert_no_secret(result.stdout + result.stderr, databricks_secrets)


# ---- models load only from the configured registry and experiment -----------------------------------

FEATURES = pd.DataFrame(
    {
        "recency_days": [1.0, 5.0, 30.0, 90.0, 2.0, 60.0, 120.0, 10.0],
        "frequency": [9.0, 7.0, 3.0, 1.0, 8.0, 2.0, 1.0, 6.0],
    }
)
REPURCHASED = np.array([1, 1, 0, 0, 1, 0, 0, 1])
FOREIGN_NAME = "local.other.clv_repurchase_de"


@dataclass
class Logged:
    run_id: str
    model_uri: str  # models:/<logged model id>, as train tags it
    model: LogisticRegression


@dataclass
class Registry:
    cfg: DictConfig
    name: str
    ours: Logged  # registered as version 1, champion
    other: Logged  # another training run of the configured experiment, not registered
    foreign: Logged  # a "training run" of model and country in another experiment
    foreign_files: str  # where the foreign model's files are (a loadable path)


def log_training_run(labels: np.ndarray) -> Logged:
    """A run with what the train stage logs and tags: model, inputs, target, model_uri."""
    model = LogisticRegression().fit(FEATURES, labels)
    with mlflow.start_run() as run:
        mlflow.set_tags({"stage": "train", "model": "repurchase", "country": "DE"})
        mlflow.log_dict(
            {"features": list(FEATURES.columns), "label": "repurchase", "keys": []}, "config/model_inputs.json"
        )
        mlflow.log_dict(target_to_dict(BinaryTarget().fit(labels)), "config/target.json")
        info = log_sklearn_model(model, input_example=FEATURES.head(3))
        mlflow.set_tag("model_uri", info.model_uri)
    return Logged(run.info.run_id, info.model_uri, model)


@pytest.fixture(scope="module")
def registry_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("security_registry")
    with mlflow_uris_restored() as patch:
        # requirements inference imports the model in a subprocess (~4 s a model): no part of this
        patch.setattr(mlflow.models, "infer_pip_requirements", lambda path, flavor, fallback=None: fallback or [])
        cfg = local_config(root / "storage")
        configure_mlflow(cfg)
        name = registered_model_name(cfg)
        ours, other = log_training_run(REPURCHASED), log_training_run(1 - REPURCHASED)
        set_alias(name, "champion", register_run_model(name, ours.run_id, ours.model_uri).version)
        # its artifacts in this world too: an experiment without a location writes to ./mlruns of the checkout
        foreign_artifacts = (root / "someone_elses_artifacts").as_uri()
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("someone_elses_experiment", foreign_artifacts))
        foreign = log_training_run(REPURCHASED)
        foreign_version = mlflow.register_model(foreign.model_uri, FOREIGN_NAME)
        mlflow.MlflowClient().set_registered_model_alias(FOREIGN_NAME, "champion", foreign_version.version)
        files = mlflow.get_logged_model(foreign.model_uri.removeprefix("models:/")).artifact_location
        assert files.startswith(foreign_artifacts), files
        yield Registry(cfg, name, ours, other, foreign, files)


@pytest.fixture
def world(registry_world: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The module's registry, configured as a stage configures it; every sklearn load is recorded."""
    configure_mlflow(registry_world.cfg)
    loads: list[str] = []
    original = mlflow.sklearn.load_model
    monkeypatch.setattr(mlflow.sklearn, "load_model", lambda uri, *a, **k: loads.append(uri) or original(uri, *a, **k))
    registry_world.loads = loads  # type: ignore[attr-defined]
    return registry_world


def test_the_configured_model_loads_by_version_by_alias_and_from_its_run(world):
    for uri in (
        f"models:/{world.name}/1",
        f"models:/{world.name}@champion",
        world.ours.model_uri,
        f"runs:/{world.ours.run_id}/model",
    ):
        np.testing.assert_allclose(
            load_sklearn_model(uri).predict_proba(FEATURES), world.ours.model.predict_proba(FEATURES)
        )
    scored = ScoredModel.from_run(world.ours.run_id, f"models:/{world.name}/1")
    assert scored.features == list(FEATURES.columns) and scored.predict(FEATURES).shape == (len(FEATURES),)


@pytest.mark.parametrize(
    "uri", [f"models:/{FOREIGN_NAME}/1", f"models:/{FOREIGN_NAME}@champion", "models:/local.clv.clv_ltv_bucket_de/1"]
)
def test_a_foreign_registered_model_is_refused_before_anything_is_loaded(world, uri):
    with pytest.raises(ConfigError, match="is not the configured registered model"):
        load_sklearn_model(uri)
    assert world.loads == [] and "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" not in os.environ


def test_uris_outside_the_configured_registry_and_experiment_are_refused(world):
    outside = [
        world.foreign.model_uri,  # logged in another experiment
        f"runs:/{world.foreign.run_id}/model",  # a run of another experiment
        f"runs:/{world.ours.run_id}/config",  # not the model's artifact path
        f"models://someone@databricks-uc/{world.name}/1",  # another registry / workspace
        f"models:/{world.name}/1?source=elsewhere",
        world.foreign_files,  # the files themselves
        str(Path(world.foreign_files.removeprefix("file://"))),
        "s3://bucket/models/model",
        "models:/m-00000000000000000000000000000000",  # no such logged model
    ]
    for uri in outside:
        with pytest.raises(ConfigError, match="refusing to load model"):
            load_sklearn_model(uri)
    assert world.loads == []


def test_nothing_loads_before_a_registry_is_configured(world, monkeypatch):
    monkeypatch.setattr(registry, "_configured", None)
    with pytest.raises(ConfigError, match="no MLflow registry is configured"):
        load_sklearn_model(f"models:/{world.name}/1")
    assert world.loads == []


def test_a_run_is_paired_only_with_its_own_model(world):
    with pytest.raises(ConfigError, match=f"comes from run {world.other.run_id}"):
        ScoredModel.from_run(world.ours.run_id, world.other.model_uri)
    with pytest.raises(ConfigError, match="was registered from run"):
        ScoredModel.from_run(world.other.run_id, f"models:/{world.name}/1")
    with pytest.raises(ConfigError, match="refusing"):
        ScoredModel.from_run(world.ours.run_id, f"runs:/{world.other.run_id}/model")
    with pytest.raises(ConfigError, match="refusing"):  # nothing foreign becomes a version of ours either
        register_run_model(world.name, world.foreign.run_id, world.foreign.model_uri)
    assert world.loads == [] and [str(v.version) for v in model_versions(world.name)] == ["1"]
    assert ScoredModel.from_run(world.other.run_id, f"runs:/{world.other.run_id}/model").run_id == world.other.run_id


def test_evaluate_refuses_a_foreign_run_named_in_config(world):
    """`evaluation.run_id` is config; a run of another experiment tagged like ours must not be loaded.

    evaluate loads the candidate before it reads any table, so a context with only the config
    reaches the check without Spark.
    """
    from mlops.stages.evaluate import evaluate

    cfg = local_config(Path(world.cfg.env.storage_root), f"evaluation.run_id={world.foreign.run_id}")
    with pytest.raises(ConfigError, match="belongs to experiment"):
        evaluate(SimpleNamespace(cfg=cfg))  # type: ignore[arg-type]
    assert world.loads == [] and [str(v.version) for v in model_versions(world.name)] == ["1"]


# ---- credentials in config never reach an output: logs, errors, MLflow artifacts ----------------------


def planted() -> str:
    """A fresh secret per test: the repository holds no token-shaped literal, and a leak is unambiguous."""
    return secrets.token_hex(16)


# (text with the secret at {s}, what redact makes of it)
CREDENTIAL_SHAPES = [
    ("sc://clv:{s}@workspace.example.com:443/", "sc://***@workspace.example.com:443/"),
    ("git clone https://{s}@github.com/org/repo.git", "git clone https://***@github.com/org/repo.git"),
    ("https://host/api?token={s}&page=2", "https://host/api?token=***&page=2"),
    ("https://host/api?page=2&access_token={s}", "https://host/api?page=2&access_token=***"),
    (
        "sc://workspace.example.com:443/;token={s};use_ssl=true",
        "sc://workspace.example.com:443/;token=***;use_ssl=true",
    ),
    ("login with client_secret={s} failed", "login with client_secret=*** failed"),
    ("export DATABRICKS_TOKEN={s}", "export DATABRICKS_TOKEN=***"),
    ("  password: {s}", "  password: '***'"),  # a YAML line stays YAML
    ('{"api_key": "{s}", "page": 2}', '{"api_key": "***", "page": 2}'),
    ("{'spark.databricks.token': '{s}'}", "{'spark.databricks.token': '***'}"),
    (
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey={s}",
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=***",
    ),
    ("Authorization: Bearer {s}", "Authorization: Bearer ***"),
    # database URLs: Oracle's user/password@ (JDBC thin and EZConnect), password= and pwd= parameters
    ("jdbc:oracle:thin:scott/{s}@//db.example.com:1521/clv", "jdbc:oracle:thin:***@//db.example.com:1521/clv"),
    ("sqlplus scott/{s}@//db.example.com:1521/clv", "sqlplus ***@//db.example.com:1521/clv"),
    (
        "jdbc:postgresql://db.example.com/clv?user=clv&password={s}&ssl=true",
        "jdbc:postgresql://db.example.com/clv?user=clv&password=***&ssl=true",
    ),
    (
        "jdbc:sqlserver://db.example.com:1433;databaseName=clv;user=sa;pwd={s};encrypt=true",
        "jdbc:sqlserver://db.example.com:1433;databaseName=clv;user=sa;pwd=***;encrypt=true",
    ),
    (
        "Driver={ODBC Driver 18 for SQL Server};Server=db;UID=sa;PWD={{s}};",
        "Driver={ODBC Driver 18 for SQL Server};Server=db;UID=sa;PWD=***;",
    ),
    # HTTP authorization headers, whatever the case and the scheme
    (
        "curl -H 'authorization: bearer {s}' https://api.example.com",
        "curl -H 'authorization: bearer ***' https://api.example.com",
    ),
    ('{"Authorization": "Bearer {s}"}', '{"Authorization": "Bearer ***"}'),
    ("Authorization: Basic {s}", "Authorization: Basic ***"),
    ("Proxy-Authorization: token {s}", "Proxy-Authorization: token ***"),
]


@pytest.mark.parametrize("text,expected", CREDENTIAL_SHAPES, ids=[expected for _, expected in CREDENTIAL_SHAPES])
def test_redact_hides_each_credential_shape(text, expected):
    secret = planted()
    assert redact(text.replace("{s}", secret)) == expected
    assert redact(expected) == expected  # redacting twice (a log record, then its stream) changes nothing


INNOCENT = [
    "token_url: https://login.microsoftonline.com/common/oauth2/token",  # names where a token comes from
    "tokens_per_customer=12",
    "python scripts/train.py env=connect env.spark.remote=sc://127.0.0.1:15002",
    "secret_scope: clv",
    "token: null",
    "password: ${oc.env:DB_PASSWORD,null}",
    "tracking_uri: sqlite:////tmp/root/mlflow/mlflow.db",
    "model.horizon_days=0 is outside [1, 3660] | where: config key model.horizon_days | fix: e.g. 90",
    "write to someone@example.com, see models:/local.clv.clv_repurchase_de@champion",
    "uses: actions/checkout@v4",  # a slash before an @ is no Oracle password outside a database URL
    "authorization: the service principal's, through a CLI profile",
]


@pytest.mark.parametrize("text", INNOCENT)
def test_redact_leaves_text_without_a_secret_as_it_is(text):
    assert redact(text) == text


# Where a secret hides from a deny-list of secret-looking names: under a Spark conf key that ends in
# `net`, in a value (a URL), behind an environment variable. (shape: (key, value with the secret at {s})).
# Spark conf keys hold dots, so they are planted through one dict override, merged into env.spark.conf.
SPARK_CONF_SECRETS = {
    "Azure storage key": ("spark.hadoop.fs.azure.account.key.clvstore.dfs.core.windows.net", "{s}"),
    "S3 secret key": ("spark.hadoop.fs.s3a.secret.key", "{s}"),
    "S3 access key": ("spark.hadoop.fs.s3a.access.key", "{s}"),
    "GCS private key": ("spark.hadoop.fs.gs.auth.service.account.private.key", "{s}"),
    # a Hive metastore on Oracle (only read with Hive support, which the local world has not)
    "Oracle JDBC URL": (
        "spark.hadoop.javax.jdo.option.ConnectionURL",
        "jdbc:oracle:thin:scott/{s}@//db.example.com:1521/hms",
    ),
    "SAS token from the environment": (
        "spark.hadoop.fs.azure.sas.clv.clvstore.blob.core.windows.net",
        "${oc.env:CLV_TEST_SAS_TOKEN}",
    ),
}
# keys the schema does not know, added with + (the bearer header under a key that names no secret)
EXTRA_KEY_SECRETS = {
    "password= URL parameter": ("env.monitoring_db_url", "jdbc:postgresql://db.example.com/clv?user=clv&password={s}"),
    "pwd= URL parameter": (
        "env.reporting_db_url",
        "jdbc:sqlserver://db.example.com:1433;databaseName=clv;user=sa;pwd={s}",
    ),
    "bearer header": ("env.http_headers.Authorization", "Bearer {s}"),
    "Databricks token": ("env.databricks_token", "{s}"),
}
ENVIRONMENT_SECRETS = {"SAS token from the environment": "CLV_TEST_SAS_TOKEN"}


@dataclass(frozen=True)
class PlantedSecrets:
    secrets: dict[str, str]  # shape -> the secret
    overrides: list[str]
    environment: dict[str, str]  # variable -> value

    def leaks(self, text: str) -> list[str]:
        """The shapes whose secret is in `text` (named, not shown: a failing test must not print it)."""
        return [shape for shape, secret in self.secrets.items() if secret in text]


def plant_every_shape() -> PlantedSecrets:
    found = {shape: planted() for shape in [*SPARK_CONF_SECRETS, *EXTRA_KEY_SECRETS]}
    conf = ", ".join(
        f"{key}: '{value.replace('{s}', found[shape])}'" for shape, (key, value) in SPARK_CONF_SECRETS.items()
    )
    overrides = [f"+env.spark.conf={{{conf}}}"]
    overrides += [f"+{key}='{value.replace('{s}', found[shape])}'" for shape, (key, value) in EXTRA_KEY_SECRETS.items()]
    environment = {variable: found[shape] for shape, variable in ENVIRONMENT_SECRETS.items()}
    return PlantedSecrets(found, overrides, environment)


def test_the_logged_config_shows_declared_values_and_of_free_form_maps_only_the_keys(monkeypatch):
    planted_secrets = plant_every_shape()
    job_run_id = planted()  # a declared key that names no secret may still be given one through the environment
    for variable, value in {**planted_secrets.environment, "CLV_TEST_JOB_RUN_ID": job_run_id}.items():
        monkeypatch.setenv(variable, value)
    cfg = compose_config(
        [
            *planted_secrets.overrides,
            "lineage.job_run_id=${oc.env:CLV_TEST_JOB_RUN_ID}",
            "lineage.git_commit=${env.databricks_token}",  # a secret copied to a declared key
        ]
    )
    shown = redacted_config(cfg)
    logged = OmegaConf.to_yaml(shown)
    assert planted_secrets.leaks(logged) == [] and job_run_id not in logged
    # free-form maps: every key, masked values, but for the few known harmless ones
    conf = shown["env"]["spark"]["conf"]
    assert {key: conf[key] for key, _ in SPARK_CONF_SECRETS.values()} == {
        **{key: "***" for key, _ in SPARK_CONF_SECRETS.values()},
        SPARK_CONF_SECRETS["SAS token from the environment"][0]: "${oc.env:CLV_TEST_SAS_TOKEN}",
    }
    assert conf["spark.sql.shuffle.partitions"] == "4" and conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.warehouse.dir"] == "***"  # a path, but no key known to be harmless
    assert shown["env"]["http_headers"] == {"Authorization": "***"}
    assert shown["env"]["databricks_token"] == shown["env"]["monitoring_db_url"] == "***"
    # declared keys: values as resolved (those from the environment as the interpolation's text)
    assert shown["lineage"] == {"job_run_id": "${oc.env:CLV_TEST_JOB_RUN_ID}", "git_commit": "***"}
    assert shown["model"]["estimator"] == OmegaConf.to_container(cfg.model.estimator, resolve=True)  # its arguments
    assert shown["model"]["estimator"]["max_iter"] == 50
    assert shown["model"]["gate"]["thresholds"] == {"roc_auc": {"min": 0.6}, "brier": {"max": 0.25}}
    assert shown["use_case"]["tables"]["train"] == "clv_repurchase_train_de"
    assert shown["env"]["mlflow"] == OmegaConf.to_container(cfg.env.mlflow, resolve=True)
    assert shown["env"]["spark"]["master"] == "local[*]" and shown["country"]["timezone"] == "Europe/Berlin"
    assert cfg.env.databricks_token == planted_secrets.secrets["Databricks token"]  # the config itself is untouched


def test_a_target_nodes_arguments_are_those_that_what_it_names_declares():
    secret = planted()
    cfg = compose_config(
        [
            "env/spark=connect",
            f"env.spark.remote='sc://clv:{secret}@workspace.example.com:443/;token={secret}'",
            "use_case.source.timestamp_format=yyyy-MM-dd",  # BundledSource(**common) hands it to Source
            "model.estimator._target_=no.such.Estimator",  # nothing to read a declaration from
        ]
    )
    shown = redacted_config(cfg)
    assert secret not in str(shown)
    assert shown["env"]["spark"]["remote"] == "sc://***@workspace.example.com:443/;token=***"  # a declared URL
    assert (
        shown["env"]["spark"]["persist"] is True
        and shown["env"]["spark"]["conf"]["spark.sql.shuffle.partitions"] == "4"
    )
    assert shown["use_case"]["source"]["timestamp_format"] == "yyyy-MM-dd"
    assert shown["model"]["estimator"] == {
        "_target_": "no.such.Estimator",
        **{key: "***" for key in cfg.model.estimator if key != "_target_"},
    }


def test_a_resolver_that_refuses_the_stand_in_leaves_every_interpolation_logged_as_its_text(monkeypatch, caplog):
    """The environment's values are traced by resolving the config once more with a stand-in for each
    `${oc.env:...}`; a resolver that cannot take one must not let the value through instead."""
    retries = secrets.randbelow(10**9) + 10**9
    monkeypatch.setenv("CLV_TEST_RETRIES", str(retries))
    OmegaConf.register_new_resolver("clv_test_twice", lambda number: 2 * int(number), replace=True)
    try:
        cfg = compose_config(["lineage.job_run_id='run-${clv_test_twice:${oc.env:CLV_TEST_RETRIES}}'"])
        assert cfg.lineage.job_run_id == f"run-{2 * retries}"
        shown = redacted_config(cfg)
    finally:
        OmegaConf.clear_resolver("clv_test_twice")
    assert str(retries) not in str(shown) and str(2 * retries) not in str(shown)
    assert shown["lineage"]["job_run_id"] == "run-${clv_test_twice:${oc.env:CLV_TEST_RETRIES}}"
    assert shown["env"]["mlflow"]["registry_uri"] == "${.tracking_uri}"  # every interpolation, as written
    assert shown["model"]["estimator"]["max_iter"] == 50  # the rest as before
    assert "interpolations unresolved: InterpolationResolutionError at lineage.job_run_id" in caplog.text


def test_redacted_output_wraps_the_streams_of_the_moment_and_every_log_record():
    secret = planted()
    stdout, stderr, log_file = io.StringIO(), io.StringIO(), io.StringIO()
    logger = logging.getLogger("tests.redacted_output")
    logger.addHandler(file_handler := logging.StreamHandler(log_file))  # a handler that is no stream of ours
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            with pytest.raises(SystemExit) as exited, redacted_output():
                assert isinstance(sys.stderr, RedactingStream)
                print("remote:", f"sc://h:443/;token={secret}")
                print("token:", secret, file=sys.stderr)  # key and value in separate writes
                error = ConfigError(
                    f"cannot reach https://clv:{secret}@workspace.example.com", where="env.spark.remote"
                )
                logger.error("train failed: %s", error.message)
                try:
                    raise RuntimeError(f"password={secret}")
                except RuntimeError:
                    logger.exception("unexpected")
                sys.exit(3)
            assert (sys.stdout, sys.stderr) == (stdout, stderr)  # restored, inside the caller's redirection
    finally:
        logger.removeHandler(file_handler)
    assert exited.value.code == 3
    written = stdout.getvalue() + stderr.getvalue() + log_file.getvalue()
    assert secret not in written
    assert stdout.getvalue() == "remote: sc://h:443/;token=***\n" and stderr.getvalue() == "token: '***'\n"
    assert "https://***@workspace.example.com | where: env.spark.remote" in log_file.getvalue()
    assert "RuntimeError: password=***" in log_file.getvalue()


@pytest.mark.parametrize(
    "overrides,full_error,shown",
    [
        (["env.spark.remote=sc://h:1/;token={s}", "foo.bar=1"], False, "token=***"),  # unquoted: the lexer echoes it
        (["env.spark.remot=sc://clv:{s}@h:1"], False, "+env.spark.remot=sc://***@h:1"),  # a typo'd key, in the hint
        # HYDRA_FULL_ERROR=1: Hydra re-raises, and Python prints the traceback after main has returned
        (["env.spark.remot=sc://clv:{s}@h:1"], True, "ConfigCompositionException: Could not override"),
    ],
    ids=["lexer error", "unknown key", "full traceback"],
)
def test_hydras_own_error_output_is_redacted(tmp_path, monkeypatch, overrides, full_error, shown):
    secret = planted()
    if full_error:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    result = run_script("split.py", *(override.replace("{s}", secret) for override in overrides), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert shown in result.stderr and ("Traceback" in result.stderr) == full_error
    assert secret not in result.stdout + result.stderr and "***" in result.stderr


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["--cfg", "job", "--resolve"], ["--help"]])
def test_the_printed_config_and_help_are_redacted(tmp_path, flag):
    secret = planted()
    result = run_script(
        "train.py",
        f"+env.databricks_token={secret}",
        "env/spark=connect",
        f"env.spark.remote='sc://clv:{secret}@workspace.example.com:443/;token={secret}'",
        *flag,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    if flag == ["--help"]:  # the groups and a few options, no config values to leak
        assert "== Config groups" in result.stdout and "remote:" not in result.stdout
        return
    assert "databricks_token: '***'" in result.stdout
    assert "remote: sc://***@workspace.example.com:443/;token=***" in result.stdout


@pytest.mark.parametrize(
    "overrides,says,shown",
    [
        # a config error that does not name the secret, with Hydra's debug log printing the whole config
        (
            [
                "env/spark=connect",
                "env.spark.remote='sc://127.0.0.1:1/;token={s}'",
                "model.horizon_days=0",
                "hydra.verbose=true",
            ],
            "model.horizon_days=0 is outside",
            "remote: sc://127.0.0.1:1/;token=***",
        ),
        # our own message quotes the value that holds the secret
        (
            ["use_case.experiment='https://clv:{s}@mlflow.example.com/clv_repurchase_fr'"],
            "where: config key use_case.experiment",
            "use_case.experiment='https://***@mlflow.example.com/clv_repurchase_fr'",
        ),
    ],
    ids=["debug log", "error message"],
)
def test_a_config_error_with_a_secret_in_config_prints_no_secret(tmp_path, overrides, says, shown):
    secret = planted()
    result = run_script(
        "train.py",
        f"env.storage_root={tmp_path}/root",
        *(override.replace("{s}", secret) for override in overrides),
        cwd=tmp_path,
    )
    assert result.returncode == ConfigError.exit_code, result.stderr[-3000:]
    assert says in result.stderr and shown in result.stderr
    assert secret not in result.stdout + result.stderr


def test_a_training_run_writes_no_planted_secret_anywhere(tmp_path, spark, monkeypatch):
    """scripts/train.py, as a job runs it, with a secret in every shape at once; then every file it
    wrote (tables, MLflow's database and artifacts, data-quality reports) and its stdout and stderr
    are searched for them. Its inputs are two tiny tables written here, so only the train stage runs."""
    from pyspark.sql import functions as F

    from mlops.runtime import RunContext

    def split_table(customers: range):
        return spark.range(customers.start, customers.stop).select(
            F.col("id").cast("string").alias("customer_id"),
            F.lit("2011-06-09").cast("date").alias("snapshot_date"),
            (F.col("id") % 7).cast("double").alias("purchase_count"),
            (F.col("id") % 2).cast("int").alias("repurchase"),
        )

    root = tmp_path / "root"
    ctx = RunContext.from_config(local_config(root), spark=spark)
    for key, customers in (("train", range(0, 40)), ("test", range(40, 60))):
        ctx.tables.overwrite(ctx.table_name(key), split_table(customers))  # no contracts: not what is tested
    planted_secrets = plant_every_shape()
    for variable, value in planted_secrets.environment.items():
        monkeypatch.setenv(variable, value)

    result = run_script("train.py", f"env.storage_root={root}", *planted_secrets.overrides, cwd=tmp_path)

    assert result.returncode == 0, planted_secrets.leaks(result.stderr) or result.stderr[-3000:]
    assert "stage train done" in result.stderr and "run first" not in result.stdout  # train alone, on these tables
    assert planted_secrets.leaks(result.stdout + result.stderr) == []
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    leaks = {
        str(path.relative_to(tmp_path)): shapes
        for path in written
        if (shapes := planted_secrets.leaks(path.read_bytes().decode("utf-8", errors="replace")))
    }
    assert leaks == {}
    (config_file,) = root.glob("mlflow/artifacts/*/*/artifacts/config/resolved_config.yaml")
    assert any(path.name == "mlflow.db" for path in written)  # the params and tags were searched too
    logged = yaml.safe_load(config_file.read_text())
    # what is known to be safe is there: the search could fail, and the logged config is still of use
    assert logged["model"]["estimator"]["max_iter"] == 50 and logged["model"]["horizon_days"] == 90
    assert logged["use_case"]["tables"]["train"] == "clv_repurchase_train_de"
    conf = logged["env"]["spark"]["conf"]
    assert conf["spark.sql.shuffle.partitions"] == "4" and conf["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert conf["spark.hadoop.fs.azure.sas.clv.clvstore.blob.core.windows.net"] == "${oc.env:CLV_TEST_SAS_TOKEN}"
    assert logged["env"]["databricks_token"] == "***"
