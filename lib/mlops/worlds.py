"""Execution worlds: where Spark runs. env/spark names one of these classes (conf/env/spark/*.yaml).

A new world is one class with a `session()` method and one YAML file; the stages never know which
world they run in, only that `ctx.spark` is a SparkSession (classic or Connect).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlops.errors import ConfigError, MachineError, SparkUnreachableError
from mlops.progress import interactive
from mlops.redact import redact

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
        # Spark's own progress bar on stderr, for a person at a terminal only (a log would fill with it)
        conf.setdefault("spark.ui.showConsoleProgress", "true" if interactive() else "false")
        log4j = Path(__file__).with_name("log4j2.properties").as_uri()
        java_options = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"{java_options} -Dlog4j2.configurationFile={log4j}".strip()
        builder = SparkSession.builder.master(self.master).appName(self.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        log.info("Spark %s, master %s", session.version, self.master)
        return session


# How long the first contact with a remote Spark may take; conf/env/spark/{connect,databricks}.yaml say the same.
CONNECT_TIMEOUT_SECONDS = 60.0
_TIMEOUT_KEY = "env.spark.connect_timeout_seconds"


def connect_timeout(value: Any) -> float:
    """env.spark.connect_timeout_seconds as seconds; anything but a positive number is refused, since
    without a bound a wrong address keeps the process waiting (the client alone retries ~10 min)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(
            f"connect_timeout_seconds={value} is not a positive number of seconds",
            where=_TIMEOUT_KEY,
            fix=f"e.g. {_TIMEOUT_KEY}={CONNECT_TIMEOUT_SECONDS:g}",
        )
    return seconds


class _UntilDeadline:
    """One of the client's retry policies, cut off at a deadline for the errors that mean the server
    did not answer. An answer that asks to wait (a Databricks cluster that is starting) keeps the
    client's own budget: that world is there.

    Duck-typed to what pyspark.sql.connect.client.retries.Retrying uses of a policy (to_state,
    can_retry, name) and of its state (next_attempt), so this module needs no pyspark import."""

    def __init__(self, policy: Any, deadline: float) -> None:
        self.policy, self.deadline = policy, deadline

    @property
    def name(self) -> str:
        return str(self.policy.name)

    def can_retry(self, error: BaseException) -> bool:
        return bool(self.policy.can_retry(error))

    def to_state(self) -> _UntilDeadlineState:
        return _UntilDeadlineState(self, self.policy.to_state())


class _UntilDeadlineState:
    def __init__(self, bounded: _UntilDeadline, state: Any) -> None:
        self.bounded, self.state = bounded, state

    @property
    def name(self) -> str:
        return self.bounded.name

    def can_retry(self, error: BaseException) -> bool:
        return self.bounded.can_retry(error)

    def next_attempt(self, error: BaseException | None = None) -> int | None:
        """Milliseconds to wait before the next try, None to give up (then the client raises)."""
        wait = self.state.next_attempt(error)
        if wait is None or error is None or not _unanswered(error):
            return wait
        left = (self.bounded.deadline - time.monotonic()) * 1000
        return None if left <= 0 else int(min(wait, left))


def _unanswered(error: BaseException) -> bool:
    """Whether an error of the first contact means that nothing answered: nothing listens, the
    connection hangs, or the channel never became ready (as gRPC or PySpark's wrapper reports it)."""
    import grpc

    if isinstance(error, grpc.FutureTimeoutError):
        return True
    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        code = error.code()
    elif callable(getattr(error, "getGrpcStatusCode", None)):  # PySpark's SparkConnectGrpcException
        code = error.getGrpcStatusCode()  # type: ignore[attr-defined]
    else:
        return False
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _reason(error: BaseException) -> str:
    """gRPC's one-line reason ("failed to connect to all addresses; ... Connection refused") instead
    of the multi-line repr of the call that PySpark puts in its exception's message."""
    import re

    details = getattr(error, "details", None)
    if callable(details) and details():
        return str(details())[:300]
    found = re.search(r'details = "([^"]*)"', str(error))
    lines = str(error).strip().splitlines()
    return (found.group(1) if found else lines[0] if lines else type(error).__name__)[:300]


def _is_connect_session(session: Any) -> bool:
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError:  # no Spark Connect client installed: a classic session
        return False
    return isinstance(session, ConnectSession)


def connect_within(session: SparkSession, seconds: float, *, address: str, where: str) -> None:
    """The first contact with a Spark Connect session's server, given up after `seconds` with a
    SparkUnreachableError that names the address and the keys.

    Left alone, the client retries an unanswered call for about ten minutes (its DefaultPolicy),
    waits 20 s per try on a server that accepts and never speaks, and at exit sends one more call
    (its atexit clean-up) under the same retries: a wrong address looked like a hang. So: the
    client's own retry policies cut off at the deadline, the channel's readiness (gRPC's
    connectivity API) awaited up to the same deadline, then one cheap call (the server's version);
    on failure the client is closed, which also turns its exit-time call into a no-op. After a
    success the client's own policies are back, to ride out later short outages as before.
    """
    client = session.client
    deadline = time.monotonic() + seconds
    own = client.get_retry_policies()
    # typed as RetryPolicy there; Retrying only calls what _UntilDeadline has (see its docstring)
    client.set_retry_policies(cast(Any, [_UntilDeadline(policy, deadline) for policy in own]))
    try:
        with warnings.catch_warnings():  # the client's "[RETRIES_EXCEEDED]" warning: the error below says it
            warnings.filterwarnings("ignore", message=r".*RETRIES_EXCEEDED")
            _until_ready(client, deadline)
            version = session.version
    except Exception as error:
        if not _unanswered(error):
            raise  # the server answered, with an error of its own
        _abandon(session)
        raise SparkUnreachableError(
            f"no Spark Connect server answered at {address} within {seconds:g} s",
            where=f"{where}, given up after {_TIMEOUT_KEY}={seconds:g}",
            fix=f"check that the server is running and listening at that host and port, that this machine "
            f"can reach it (VPN, firewall, proxy) and whether it needs TLS (`;use_ssl=true`); a slow "
            f"start or a slow network: raise {_TIMEOUT_KEY}",
        ) from None
    finally:
        client.set_retry_policies(own)
    log.info("Spark %s over Spark Connect at %s", version, address)


def _until_ready(client: Any, deadline: float) -> None:
    """Wait for the client's channel to be connected (HTTP/2 settings exchanged), up to the deadline.

    A listener that never speaks holds a call for gRPC's own connect timeout (20 s) per try, which no
    retry policy shortens; readiness is what the deadline can bound. Clients without the channel
    attribute (none known) rely on the bounded retries alone."""
    import grpc

    channel = getattr(client, "_channel", None)
    if channel is None:
        return
    ready = grpc.channel_ready_future(channel)
    try:
        ready.result(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        ready.cancel()  # stops gRPC's watch of the channel's state


def _abandon(session: SparkSession) -> None:
    """Close a session whose server never answered: no call to release it (there is nothing to
    release, and the call would wait on the server again), and the channel closed, so neither the
    client's exit-time clean-up nor a later getOrCreate waits on it."""
    session.release_session_on_close = False  # type: ignore[attr-defined]
    session.stop()


class ConnectSpark:
    """Any Spark Connect server (sc://host:port)."""

    def __init__(
        self,
        remote: str | None = None,
        persist: bool = True,
        conf: dict[str, Any] | None = None,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.remote, self.persist = remote, persist
        self.conf = {key: str(value) for key, value in (conf or {}).items()}
        self.connect_timeout_seconds = connect_timeout(connect_timeout_seconds)

    def session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        if not self.remote:
            raise ConfigError(
                "env/spark=connect needs a server address",
                where="env.spark.remote",
                fix="e.g. env.spark.remote=sc://127.0.0.1:15002",
            )
        address = redact(self.remote)
        log.info("connecting to %s (giving up after %g s: %s)", address, self.connect_timeout_seconds, _TIMEOUT_KEY)
        # without settings the builder makes the session without a call to the server, so the first
        # contact is the bounded one; the settings follow on the same session
        connect_within(
            SparkSession.builder.remote(self.remote).getOrCreate(),
            self.connect_timeout_seconds,
            address=address,
            where="env.spark.remote",
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
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.remote, self.profile, self.cluster_id = remote, profile, cluster_id
        self.serverless, self.persist = serverless, persist
        self.connect_timeout_seconds = connect_timeout(connect_timeout_seconds)

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
        # where the address comes from, for the messages: the URL in config, else the workspace's settings
        source = "env.spark.remote" if self.remote else "env.spark.profile / DATABRICKS_HOST"
        target = redact(self.remote) if self.remote else "the workspace"
        log.info("connecting to %s (giving up after %g s: %s)", target, self.connect_timeout_seconds, _TIMEOUT_KEY)
        try:
            # a connection string's session is made without a call; a workspace's is validated here by
            # Databricks Connect itself (serverless: one call under its own retries), outside our bound
            session = builder.getOrCreate()
        except Exception as error:
            if _unanswered(error):
                raise SparkUnreachableError(
                    f"Databricks Connect got no answer from {target}: {_reason(error)}",
                    where=source,
                    fix="check the workspace host and that this machine can reach it (VPN, firewall, proxy)",
                ) from None
            # the SDK's own errors name the missing setting; keep them, add the where
            raise ConfigError(
                f"Databricks Connect could not start a session: {error}",
                where=where,
                fix="check the profile / DATABRICKS_* variables and that the cluster or serverless "
                "compute is reachable (`databricks auth profiles`)",
            ) from error
        if _is_connect_session(session):
            host = target if self.remote else redact(str(getattr(session.client, "host", target)))
            connect_within(session, self.connect_timeout_seconds, address=host, where=source)
        log.info("Spark session from Databricks Connect (%s)", "remote URL" if self.remote else "workspace")
        return session
