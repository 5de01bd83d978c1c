"""The Databricks Spark adapter: the job's own session on a cluster, Databricks Connect from an IDE,
and a clear error when Databricks Connect is missing or has nothing to connect to.

databricks-connect cannot share an environment with pyspark, so it is replaced at the import
boundary by tests/fakes/databricks_connect.py (same builder signatures and refusals as the SDK).
Issue 6 runs the real client against a Spark Connect server.
"""

from __future__ import annotations

import inspect
import re

import pytest
from omegaconf import open_dict

from mlops.config import compose_config
from mlops.errors import ConfigError
from mlops.runtime import get_spark
from tests.fakes import databricks_connect as fake_connect


@pytest.fixture
def spark_cfg(tmp_path, monkeypatch):
    """env=dev's Spark block, on a machine with no Databricks settings at all."""
    for name in ("DATABRICKS_RUNTIME_VERSION", "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "SPARK_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    cfg = compose_config(["env=dev"])
    return cfg.env.spark


def _signature(method) -> str:
    """`inspect.signature` without `self` and annotations, in REAL_SIGNATURES' notation."""
    parameters = [
        p.replace(annotation=inspect.Parameter.empty)
        for name, p in inspect.signature(method).parameters.items()
        if name != "self"
    ]
    return str(inspect.Signature(parameters))


@pytest.mark.parametrize("name", sorted(fake_connect.REAL_SIGNATURES))
def test_the_fake_builder_has_the_sdks_signatures(name):
    method = getattr(fake_connect.FakeDatabricksSession.Builder, name)
    assert _signature(method) == fake_connect.REAL_SIGNATURES[name]


def test_every_databricks_env_selects_the_databricks_adapter():
    for env in ("dev", "staging", "prod", "test"):
        spark = compose_config([f"env={env}"]).env.spark
        assert spark._target_ == "mlops.worlds.DatabricksSpark", env
        # connection settings only: credentials come from a profile or the environment
        assert set(spark) >= {"profile", "cluster_id", "serverless", "remote"}
        assert not {"host", "token", "client_secret"} & set(spark), env


def test_inside_a_databricks_job_the_runtimes_session_is_used(spark_cfg, spark, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    fake = fake_connect.install(monkeypatch)
    assert get_spark(spark_cfg) is spark  # the active session, not a new Connect session
    assert fake.calls == []


def test_without_databricks_connect_the_error_says_how_to_install_it(spark_cfg, monkeypatch):
    fake_connect.uninstall(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        get_spark(spark_cfg)
    message = caught.value.message
    assert "databricks-connect is not installed" in message
    assert "env/spark=databricks" in message
    assert "separate virtual environment" in message and "env=local" in message


def test_with_nothing_configured_the_error_names_what_to_set(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        get_spark(spark_cfg)
    assert "no workspace to connect to" in caught.value.message
    assert "env.spark.profile" in caught.value.message and "DATABRICKS_HOST" in caught.value.message
    assert fake.sessions == []  # refused before the SDK is asked


def test_a_profile_and_a_cluster_go_to_the_builder(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch, session="remote-session")
    with open_dict(spark_cfg):
        spark_cfg.profile, spark_cfg.cluster_id = "ml-dev", "0123-456789-abcdef"
    assert get_spark(spark_cfg) == "remote-session"
    assert fake.sessions == [
        {
            "conn_string": None,
            "host": None,
            "cluster_id": "0123-456789-abcdef",
            "serverless": False,
            "profile": "ml-dev",
        }
    ]


def test_serverless_wins_over_a_cluster_id_the_sdk_would_refuse_together(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch, session="serverless-session")
    with open_dict(spark_cfg):
        spark_cfg.profile, spark_cfg.cluster_id, spark_cfg.serverless = "ml-dev", "0123-456789-abcdef", True
    assert get_spark(spark_cfg) == "serverless-session"
    assert fake.sessions[0]["serverless"] is True and fake.sessions[0]["cluster_id"] is None


def test_the_fake_refuses_what_the_sdk_refuses(monkeypatch):
    fake = fake_connect.install(monkeypatch)
    with pytest.raises(Exception, match="Can't set both cluster id and serverless"):
        fake.builder.clusterId("c").serverless(True).getOrCreate()
    with pytest.raises(Exception, match="conn_string must not be set"):
        fake.builder.remote("sc://127.0.0.1:15002", cluster_id="c").getOrCreate()


def test_environment_variables_are_enough_to_connect(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch, session="env-session")
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.example")
    assert get_spark(spark_cfg) == "env-session"
    assert fake.calls == []  # the SDK reads the variables itself; nothing is passed from config


def test_a_spark_connect_url_is_passed_as_the_connection_string(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch, session="connect-session")
    with open_dict(spark_cfg):
        spark_cfg.remote = "sc://127.0.0.1:15002"
    assert get_spark(spark_cfg) == "connect-session"
    assert fake.sessions[0]["conn_string"] == "sc://127.0.0.1:15002"


def test_an_sdk_failure_becomes_a_config_error_that_keeps_the_sdks_reason(spark_cfg, monkeypatch):
    fake = fake_connect.install(monkeypatch)
    fake.fail_with = Exception("Cluster id or serverless are required but were not specified.")
    with open_dict(spark_cfg):
        spark_cfg.profile = "ml-dev"
    with pytest.raises(ConfigError) as caught:
        get_spark(spark_cfg)
    assert "Cluster id or serverless are required" in caught.value.message
    assert re.search(r"databricks auth profiles", caught.value.message)
