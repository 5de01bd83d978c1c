"""A stand-in for `databricks.connect` at the SDK boundary: same builder methods and signatures as
databricks-connect 16/17 (`DatabricksSession.Builder`), the same refusals, and a record of calls.

databricks-connect cannot be installed next to pyspark, so the adapter in mlops.runtime is tested
against this. `REAL_SIGNATURES` is copied by hand from the SDK's source; a test compares the fake
against it, and the adapter's calls go through the fake's real signatures, so a call the SDK would
reject (a wrong keyword, a missing argument) fails here too. Given no session to return, a
connection string gets a real Spark Connect session, made as the SDK makes it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

# (method, parameters as `inspect.signature` prints them, minus `self` and annotations)
REAL_SIGNATURES: dict[str, str] = {
    "remote": "(conn_string=None, *, host=None, cluster_id=None, serverless=False, token=None, "
    "user_agent='', headers=None)",
    "host": "(host)",
    "clusterId": "(clusterId)",
    "serverless": "(enabled=True)",
    "token": "(token)",
    "profile": "(profile)",
    "sdkConfig": "(config)",
    "validateSession": "(enabled=True)",
    "getOrCreate": "()",
    "create": "()",
}


class FakeDatabricksSession:
    """`DatabricksSession`: `builder` is a fresh Builder on every access, as in the SDK."""

    calls: list[tuple[str, tuple, dict]] = []
    sessions: list[dict[str, Any]] = []
    session: Any = None  # what getOrCreate returns (a test's local SparkSession)
    fail_with: Exception | None = None  # what getOrCreate raises (e.g. an unreachable workspace)

    class Builder:
        def __init__(self) -> None:
            self._conn_string: str | None = None
            self._host: str | None = None
            self._cluster_id: str | None = None
            self._serverless_mode = False
            self._token: str | None = None
            self._profile: str | None = None
            self._config: Any = None
            self._validate: bool | None = None

        def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
            FakeDatabricksSession.calls.append((name, args, kwargs))

        def remote(
            self,
            conn_string: str = None,
            *,
            host: str = None,
            cluster_id: str = None,
            serverless: bool = False,
            token: str = None,
            user_agent: str = "",
            headers: dict[str, str] | None = None,
        ) -> FakeDatabricksSession.Builder:
            self._record("remote", conn_string, host=host, cluster_id=cluster_id, serverless=serverless, token=token)
            self._conn_string, self._host, self._cluster_id = conn_string, host, cluster_id
            self._serverless_mode, self._token = serverless, token
            return self

        def host(self, host: str) -> FakeDatabricksSession.Builder:
            self._record("host", host)
            self._host = host
            return self

        def clusterId(self, clusterId: str) -> FakeDatabricksSession.Builder:
            self._record("clusterId", clusterId)
            self._cluster_id = clusterId
            return self

        def serverless(self, enabled: bool = True) -> FakeDatabricksSession.Builder:
            self._record("serverless", enabled)
            self._serverless_mode = enabled
            return self

        def token(self, token: str) -> FakeDatabricksSession.Builder:
            self._record("token", token)
            self._token = token
            return self

        def profile(self, profile: str) -> FakeDatabricksSession.Builder:
            self._record("profile", profile)
            self._profile = profile
            return self

        def sdkConfig(self, config: Any) -> FakeDatabricksSession.Builder:
            self._record("sdkConfig", config)
            self._config = config
            return self

        def validateSession(self, enabled: bool = True) -> FakeDatabricksSession.Builder:
            self._record("validateSession", enabled)
            self._validate = enabled
            return self

        def getOrCreate(self) -> Any:
            return self._create()

        def create(self) -> Any:
            return self._create()

        def _create(self) -> Any:
            # the SDK's own refusals, with its wording
            if self._conn_string is not None and (
                self._host or self._token or self._cluster_id or self._serverless_mode
            ):
                raise Exception("conn_string must not be set when connection parameters are explicitly configured.")
            if self._cluster_id and self._serverless_mode:
                raise Exception("Can't set both cluster id and serverless.")
            if FakeDatabricksSession.fail_with is not None:
                raise FakeDatabricksSession.fail_with
            FakeDatabricksSession.sessions.append(
                {
                    "conn_string": self._conn_string,
                    "host": self._host,
                    "cluster_id": self._cluster_id,
                    "serverless": self._serverless_mode,
                    "profile": self._profile,
                }
            )
            if FakeDatabricksSession.session is None and self._conn_string is not None:
                # what the SDK does with a connection string (`_from_connection_string`): a plain
                # Spark Connect session, made without a word to the server
                from pyspark.sql import SparkSession

                return SparkSession.builder.remote(self._conn_string).create()
            return FakeDatabricksSession.session

    @classmethod
    def reset(cls, session: Any = None) -> None:
        cls.calls, cls.sessions, cls.session, cls.fail_with = [], [], session, None


class _BuilderProperty:
    def __get__(self, instance: Any, owner: type) -> FakeDatabricksSession.Builder:
        return FakeDatabricksSession.Builder()


FakeDatabricksSession.builder = _BuilderProperty()  # type: ignore[attr-defined]


def install(monkeypatch: Any, session: Any = None) -> type[FakeDatabricksSession]:
    """Make `from databricks.connect import DatabricksSession` return the fake for one test."""
    FakeDatabricksSession.reset(session)
    module = types.ModuleType("databricks.connect")
    module.DatabricksSession = FakeDatabricksSession  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "databricks.connect", module)
    return FakeDatabricksSession


def install_for_process(session: Any = None) -> type[FakeDatabricksSession]:
    """The same for the rest of this process: a script run in a process of its own, where nothing
    needs undoing (a Spark Connect session in the test process would switch its Spark to Connect)."""
    FakeDatabricksSession.reset(session)
    module = types.ModuleType("databricks.connect")
    module.DatabricksSession = FakeDatabricksSession  # type: ignore[attr-defined]
    sys.modules["databricks.connect"] = module
    return FakeDatabricksSession


def uninstall(monkeypatch: Any) -> None:
    """Make the import fail as it does where databricks-connect is not installed."""
    monkeypatch.setitem(sys.modules, "databricks.connect", None)
