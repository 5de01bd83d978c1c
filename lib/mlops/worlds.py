"""Execution worlds: where Spark runs. env/spark names one of these classes (conf/env/spark/*.yaml).

A new world is one class with a `session()` method and one YAML file; the stages never know which
world they run in, only that `ctx.spark` is a SparkSession (classic or Connect).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError, MachineError
from mlops.progress import interactive

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# the Java releases Spark 4 runs on
SUPPORTED_JAVA = (17, 21)
_JAVA_HELP = (
    "install a Java 17 or 21 runtime (e.g. `sudo apt install openjdk-17-jre-headless`, "
    "`brew install openjdk@17`, or https://adoptium.net) and put it on PATH or set JAVA_HOME"
)


def java_version(environ: dict[str, str] | None = None) -> tuple[int, str]:
    """(major version, the java binary) of the Java that Spark will start: $JAVA_HOME/bin/java when
    JAVA_HOME is set, else `java` on PATH, as PySpark's launcher chooses.

    Checked before Spark starts: without it a missing or old Java shows as a gateway traceback.
    """
    import re
    import shutil
    import subprocess

    environ = dict(os.environ if environ is None else environ)
    home = environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java", path=environ.get("PATH"))
    where = f"JAVA_HOME={home}" if home else "PATH"
    if not java or not Path(java).is_file():
        raise MachineError(
            f"no Java runtime found: local Spark needs Java {' or '.join(map(str, SUPPORTED_JAVA))}",
            where=f"{java} ({where})" if java else where,
            fix=_JAVA_HELP,
        )
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, env=environ)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MachineError(f"{java} -version failed: {error}", where=where, fix=_JAVA_HELP) from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown.stderr + shown.stdout)
    if not found:
        raise MachineError(
            f"cannot tell the version of {java}: {(shown.stderr or shown.stdout).strip()[:200]}",
            where=where,
            fix=_JAVA_HELP,
        )
    major = int(found.group(2)) if found.group(1) == "1" else int(found.group(1))  # "1.8.0" is Java 8
    if major < SUPPORTED_JAVA[0]:
        raise MachineError(
            f"Java {major} at {java} is too old: Spark 4 needs Java {' or '.join(map(str, SUPPORTED_JAVA))}",
            where=where,
            fix=_JAVA_HELP,
        )
    return major, java


class LocalSpark:
    """Spark in this process (local[*]), on loopback only."""

    def __init__(
        self,
        master: str = "local[*]",
        app_name: str = "ac-mlops",
        persist: bool = True,
        conf: dict[str, Any] | None = None,
    ) -> None:
        self.master, self.app_name, self.persist = master, app_name, persist
        self.conf = {key: str(value) for key, value in (conf or {}).items()}

    def session(self) -> SparkSession:
        # Python workers must be this interpreter, or UDFs import a different site-packages;
        # loopback only, since the machine (and a CI runner) may have no routable address.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        if SparkSession.getActiveSession() is None:
            java_version()

        conf = dict(self.conf)
        if interactive():  # Spark's own progress bar on stderr, for a person at a terminal only
            conf.setdefault("spark.ui.showConsoleProgress", "true")
        log4j = Path(__file__).with_name("log4j2.properties").as_uri()
        java_options = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"{java_options} -Dlog4j2.configurationFile={log4j}".strip()
        builder = SparkSession.builder.master(self.master).appName(self.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        log.info("Spark %s, master %s", session.version, self.master)
        return session


class ConnectSpark:
    """Any Spark Connect server (sc://host:port)."""

    def __init__(self, remote: str | None = None, persist: bool = True, conf: dict[str, Any] | None = None) -> None:
        self.remote, self.persist = remote, persist
        self.conf = {key: str(value) for key, value in (conf or {}).items()}

    def session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        if not self.remote:
            raise ConfigError(
                "env/spark=connect needs a server address",
                where="env.spark.remote",
                fix="e.g. env.spark.remote=sc://127.0.0.1:15002",
            )
        builder = SparkSession.builder.remote(self.remote)
        for key, value in self.conf.items():  # session settings; the server owns static ones
            builder = builder.config(key, value)
        return builder.getOrCreate()


# Where Databricks Connect looks for a workspace when the builder is given none (its documented order).
_DATABRICKS_AUTH_VARIABLES = ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "SPARK_REMOTE")


class DatabricksSpark:
    """The job's own session on Databricks; Databricks Connect from anywhere else.

    Credentials never come from config: Databricks Connect reads them from a CLI profile or the
    DATABRICKS_* variables. Config only picks the profile and the compute (cluster or serverless).
    """

    def __init__(
        self,
        remote: str | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        serverless: bool = False,
        persist: bool = False,
    ) -> None:
        self.remote, self.profile, self.cluster_id = remote, profile, cluster_id
        self.serverless, self.persist = serverless, persist

    def configured(self) -> bool:
        config_file = Path(os.environ.get("DATABRICKS_CONFIG_FILE", Path.home() / ".databrickscfg"))
        return bool(
            self.remote
            or self.profile
            or any(os.environ.get(name) for name in _DATABRICKS_AUTH_VARIABLES)
            or config_file.is_file()
        )

    def session(self) -> SparkSession:
        if "DATABRICKS_RUNTIME_VERSION" in os.environ:  # a job task: the runtime has built the session
            from pyspark.sql import SparkSession

            return SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        where = "env/spark=databricks"
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            raise ConfigError(
                "env is a Databricks target but databricks-connect is not installed",
                where=where,
                fix="in a separate virtual environment (it cannot share one with pyspark): "
                "pip install -e '.[databricks]' (README: Databricks Connect from your IDE); "
                "or use env=local",
            ) from None
        if not self.configured():
            raise ConfigError(
                "Databricks Connect has no workspace to connect to",
                where=where,
                fix="set env.spark.profile=<CLI profile>, or DATABRICKS_HOST plus auth variables "
                "(`databricks auth login` writes a profile)",
            )
        builder = DatabricksSession.builder
        if self.remote:
            builder = builder.remote(self.remote)
        else:
            if self.profile:
                builder = builder.profile(self.profile)
            if self.serverless:
                builder = builder.serverless(True)
            elif self.cluster_id:
                builder = builder.clusterId(self.cluster_id)
        try:
            session = builder.getOrCreate()
        except Exception as error:  # the SDK's own errors name the missing setting; keep them, add the where
            raise ConfigError(
                f"Databricks Connect could not start a session: {error}",
                where=where,
                fix="check the profile / DATABRICKS_* variables and that the cluster or serverless "
                "compute is reachable (`databricks auth profiles`)",
            ) from error
        log.info("Spark session from Databricks Connect (%s)", "remote URL" if self.remote else "workspace")
        return session
