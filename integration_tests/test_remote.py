"""The pipeline on remote Spark, selected by config only: a Spark Connect server (what Databricks
Connect and serverless jobs are), and a standalone cluster (what a job cluster is).

Each run goes through the real scripts in a fresh process, then its tables are compared with a
local run of the same stages on the same data: the same rows, keys, champion and predictions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration_tests.conftest import DE_PIPELINE_OVERRIDES, local_config
from integration_tests.servers import LOOPBACK, start_connect_server, start_standalone_cluster
from integration_tests.snapshot import snapshot
from mlops.runtime import RunContext
from tests.timing import timed

pytestmark = [pytest.mark.integration, pytest.mark.remote]

REPO = Path(__file__).resolve().parents[1]
MODELS = ("repurchase", "ltv_bucket")
SCORE_TOLERANCE = 1e-6


def run_python(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP=LOOPBACK)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    result.wall_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="module")
def local_runs(de_pipelines):
    """The reference: the shared local run of every stage (integration_tests/conftest.py), as a snapshot."""

    class Snapshots(dict):
        def __missing__(self, model: str) -> dict:
            run = de_pipelines[model]
            self[model] = {"snapshot": snapshot(run["ctx"]), "wall_seconds": run["wall_seconds"]}
            return self[model]

    return Snapshots()


def assert_same_outputs(remote: dict, local: dict) -> None:
    for key, table in local["tables"].items():
        assert table is not None, f"local run wrote no {key}"
        assert remote["tables"][key] == table, f"{key}: remote {remote['tables'][key]} != local {table}"
    assert remote["champion"] == local["champion"] == "1"
    assert len(remote["predictions"]) == len(local["predictions"]) > 0
    for mine, theirs in zip(remote["predictions"], local["predictions"]):
        assert mine[:3] == theirs[:3] and abs(mine[3] - theirs[3]) <= SCORE_TOLERANCE, (mine, theirs)


# -- Spark Connect ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    server = start_connect_server(tmp_path_factory.mktemp("connect-server"))
    try:
        yield server
    finally:
        server.stop()


def connect_overrides(server, storage_root: Path, model: str) -> list[str]:
    return [
        "env=connect",
        f"env.spark.remote=sc://{LOOPBACK}:{server.port}",
        f"env.storage_root={storage_root}",
        f"model={model}",
        *DE_PIPELINE_OVERRIDES,
    ]


@pytest.fixture(scope="module")
def connect_pipeline(connect_server, tmp_path_factory) -> tuple[list[str], subprocess.CompletedProcess]:
    """Every stage of the first model over Spark Connect, once: (its overrides, the run). Later tests
    of this module stop and kill stages of this world."""
    root = tmp_path_factory.mktemp("connect-world")
    overrides = connect_overrides(connect_server, root, MODELS[0])
    return overrides, run_python(["scripts/run_pipeline.py", *overrides])


def test_the_whole_pipeline_over_spark_connect_matches_the_local_run(connect_pipeline, local_runs):
    model = MODELS[0]
    overrides, run = connect_pipeline
    root = Path(next(o for o in overrides if o.startswith("env.storage_root=")).split("=", 1)[1])
    print(
        f"{model} over Spark Connect: {run.wall_seconds:.1f} s "
        f"(local, in-process: {local_runs[model]['wall_seconds']:.1f} s)"
    )
    remote = json.loads(run_python(["-m", "integration_tests.snapshot", *overrides]).stdout.strip().splitlines()[-1])
    assert_same_outputs(remote, local_runs[model]["snapshot"])
    # the tables are the server's: a catalog view over versioned tables, not local files
    assert not (root / "warehouse").exists()


# -- Databricks Connect (the IDE path) ------------------------------------------------------------


@pytest.fixture(scope="module")
def dbconnect_python(job_environment) -> Path:
    """Databricks Connect as the IDE path installs it: setup.cfg's `databricks` extra around the
    project, here the jobs' own environment (the same extra, the wheel instead of an editable install)."""
    return job_environment.python


@pytest.fixture(scope="module")
def dbconnect_server(tmp_path_factory, dbconnect_python):
    """A Spark Connect server whose Python workers run the Databricks Connect client's Python
    (Spark requires the same minor version for UDFs, and serverless runs them in the task's environment)."""
    server = start_connect_server(tmp_path_factory.mktemp("dbconnect-server"), python=dbconnect_python)
    try:
        yield server
    finally:
        server.stop()


def test_databricks_connect_runs_the_other_model_like_an_ide_session(
    dbconnect_python, dbconnect_server, local_runs, tmp_path
):
    """env/spark=databricks with a Spark Connect URL: DatabricksSession.builder.remote(...),
    the exact code path of 'Databricks Connect from your IDE', with the jobs' own environment
    (Python 3.12, Databricks Connect 18). It runs the model the plain Spark Connect client did not;
    together the two tests cover both models over Connect and both clients.
    """
    model = MODELS[1]
    overrides = [*connect_overrides(dbconnect_server, tmp_path, model), "env/spark=databricks"]
    stages = "[extract,features,split,train,evaluate,batch_inference,monitor]"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYSPARK_PYTHON", None)  # the server's Python workers are the server's concern
    started = time.perf_counter()
    result = subprocess.run(
        [str(dbconnect_python), "scripts/run_pipeline.py", *overrides, f"pipeline.stages={stages}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    wall = time.perf_counter() - started
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-6000:]}"
    assert "Spark session from Databricks Connect (remote URL)" in result.stderr
    print(f"{model} through Databricks Connect: {wall:.1f} s")
    inspect = subprocess.run(
        [str(dbconnect_python), "-m", "integration_tests.snapshot", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert inspect.returncode == 0, inspect.stderr[-4000:]
    remote = json.loads(inspect.stdout.strip().splitlines()[-1])
    assert_same_outputs(remote, local_runs[model]["snapshot"])


# -- Standalone cluster (a job cluster's shape: separate executor JVM and Python workers) ------------


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory):
    master, worker = start_standalone_cluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield f"spark://{LOOPBACK}:{master.port}"
    finally:
        worker.stop()
        master.stop()


def test_the_pipeline_on_a_standalone_cluster_matches_the_local_run(standalone_master, local_runs, spark, tmp_path):
    model = "repurchase"
    overrides = [
        f"env.spark.master={standalone_master}",
        f"env.storage_root={tmp_path}",
        f"model={model}",
        *DE_PIPELINE_OVERRIDES,
        "+env.spark.conf.spark.executor.memory=1g",
        "+env.spark.conf.spark.cores.max=2",
    ]
    run = run_python(["scripts/run_pipeline.py", *overrides])
    assert f"master {standalone_master}" in run.stderr
    print(
        f"{model} on a standalone cluster: {run.wall_seconds:.1f} s "
        f"(local, in-process: {local_runs[model]['wall_seconds']:.1f} s)"
    )
    # the tables are Delta files on the shared disk: read them back with this process's session
    ctx = RunContext.from_config(local_config(tmp_path, f"model={model}", *DE_PIPELINE_OVERRIDES), spark=spark)
    assert_same_outputs(snapshot(ctx), local_runs[model]["snapshot"])


# -- kills between two writes on a catalog world (the journal is a table of the catalog) -------------


def catalog(remote: str, *statements: str) -> list[list[dict]]:
    """The rows of each SQL statement, run on the server by a Spark Connect client of its own."""
    script = (
        "import json, sys; from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()\n"
        "print(json.dumps([[r.asDict() for r in spark.sql(q).collect()] for q in sys.argv[2:]], default=str))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script, remote, *statements], capture_output=True, text=True, timeout=300
    )
    assert found.returncode == 0, found.stderr[-3000:]
    return json.loads(found.stdout.strip().splitlines()[-1])


def versions(remote: str, *tables: str) -> dict[str, int]:
    shown = catalog(remote, *(f"SHOW TBLPROPERTIES spark_catalog.clv.{t} ('mlops.version')" for t in tables))
    return {table: int(rows[0]["value"]) for table, rows in zip(tables, shown)}


def rows(remote: str, *tables: str) -> dict[str, int]:
    counted = catalog(remote, *(f"SELECT count(*) AS n FROM spark_catalog.clv.{t}" for t in tables))
    return {table: found[0]["n"] for table, found in zip(tables, counted)}


def open_units(remote: str) -> list[dict]:
    (rows,) = catalog(
        remote,
        "SELECT unit_id, state FROM (SELECT unit_id, state, row_number() OVER (PARTITION BY unit_id ORDER BY seq DESC) "
        "AS latest FROM spark_catalog.clv.clv_write_journal WHERE country = 'de') WHERE latest = 1 AND state = 'open'",
    )
    return rows


@timed("a script in a process of its own")
def run_script(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP=LOOPBACK)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_a_kill_between_features_and_labels_on_a_catalog_world_is_undone_by_its_own_job_run(
    connect_server, connect_pipeline, tmp_path
):
    """Job run 501's features task dies after features, before labels. While 501 might still be
    writing, another job run's reader is refused (exit 8) and changes nothing; the task's retry in job
    run 501 undoes the half write and writes both tables whole."""
    from integration_tests.faults import stop_at

    overrides, _ = connect_pipeline
    remote = f"sc://{LOOPBACK}:{connect_server.port}"
    tables = ("clv_repurchase_features_de", "clv_repurchase_labels_de")
    before, rows_before = versions(remote, *tables), rows(remote, *tables)
    owner = [*overrides, "lineage.job_run_id=501"]
    stopped = stop_at("commit:clv_repurchase_features_de", "features.py", owner, tmp_path)
    try:
        half = versions(remote, *tables)
        assert half == {tables[0]: before[tables[0]] + 1, tables[1]: before[tables[1]]}
        assert len(open_units(remote)) == 1
        other = run_script(["scripts/split.py", *overrides, "lineage.job_run_id=777"])
        assert other.returncode == 8, other.stderr[-3000:]
        assert "job run 501" in other.stderr and "which may still be writing" in other.stderr
        assert versions(remote, *tables) == half, "a live write was touched"
    finally:
        stopped.kill()
    retry = run_script(["scripts/features.py", *owner])
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert "found a features run of repurchase" in retry.stderr and "job run 501" in retry.stderr
    after = versions(remote, *tables)
    assert after[tables[1]] == before[tables[1]] + 1  # labels written once, by the retry
    assert open_units(remote) == []
    # both tables written whole by the retry, from the same transactions: what the last whole run wrote
    assert rows(remote, *tables) == rows_before


def test_a_kill_between_scoring_features_and_predictions_is_undone_once_the_lease_runs_out(
    connect_server, connect_pipeline, tmp_path
):
    """Job run 601's batch inference dies between its two writes; another job's monitor (job run 602)
    may undo it only once the unit's lease is over (here at once: the writer held a lease of no
    minutes), and monitoring then reads a consistent pair of tables."""
    from integration_tests.faults import kill_at

    overrides, _ = connect_pipeline
    remote = f"sc://{LOOPBACK}:{connect_server.port}"
    tables = ("clv_repurchase_scoring_features_de", "clv_repurchase_predictions_de")
    before = versions(remote, *tables)
    # a lease of no minutes: the unit is past it as soon as its owner stops renewing it
    kill_at(
        "commit:clv_repurchase_scoring_features_de",
        "batch_inference.py",
        [*overrides, "lineage.job_run_id=601", "inference.date=2011-12-08", "journal.lease_minutes=0"],
        tmp_path,
    )
    assert versions(remote, *tables) == {tables[0]: before[tables[0]] + 1, tables[1]: before[tables[1]]}
    monitor = run_script(["scripts/monitor.py", *overrides, "lineage.job_run_id=602"])
    assert monitor.returncode == 0, monitor.stderr[-3000:]
    assert "found a batch_inference run of repurchase" in monitor.stderr
    assert versions(remote, *tables) == before and open_units(remote) == []
    counts = rows(remote, *tables)
    assert counts[tables[0]] == counts[tables[1]] > 0  # one prediction per customer and scoring date


APPEND_AT_ONCE = """
import datetime as dt, json, sys, threading
from pyspark.sql import SparkSession
from mlops.journal import JOURNAL_SCHEMA, TableJournal, WriteUnit
from mlops.tables import TableName

remote, per_job = sys.argv[1], int(sys.argv[2])
name = TableName("spark_catalog", "clv", "clv_write_journal_at_once")
first = SparkSession.builder.remote(remote).create()
first.sql("CREATE SCHEMA IF NOT EXISTS spark_catalog.clv")
first.sql(f"CREATE TABLE IF NOT EXISTS {name.quoted} ({JOURNAL_SCHEMA})")
first.stop()
failures = []

def job(run: str) -> None:
    journal = TableJournal(SparkSession.builder.remote(remote).create(), name, "clv", "xx", dt.timedelta(minutes=90))
    try:
        for i in range(per_job):
            unit = WriteUnit(f"{run}-{i}", "features", "repurchase", "", 0, "host", [], owner_run=run, journal=journal)
            unit.save()
            unit.finish()
    except Exception as error:
        failures.append(f"{run}: {str(error).splitlines()[0]}")
    finally:
        journal.spark.stop()  # a session left open keeps its client threads, and this process, alive

threads = [threading.Thread(target=job, args=(run,)) for run in ("701", "702")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
reader = TableJournal(SparkSession.builder.remote(remote).create(), name, "clv", "xx", dt.timedelta(minutes=90))
rows = reader.spark.table(str(name)).groupBy("state").count().collect()
print(json.dumps({"failures": failures, "rows": {r["state"]: r["count"] for r in rows}, "open": len(reader.units())}))
reader.spark.stop()
"""


def test_two_jobs_appending_to_the_journal_at_once_lose_no_record(connect_server):
    """Two jobs' write units recorded at the same moment: every append lands and none fails, as two
    blind appends to a workspace's Delta table cannot conflict (servers.start_connect_server says how
    the stand-in's Parquet tables are kept to that)."""
    per_job = 8
    result = subprocess.run(
        [sys.executable, "-c", APPEND_AT_ONCE, f"sc://{LOOPBACK}:{connect_server.port}", str(per_job)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    told = "\n".join(line for line in result.stderr.splitlines() if not line.lstrip().startswith("at "))
    assert result.returncode == 0, told[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"failures": [], "rows": {"open": 2 * per_job, "finished": 2 * per_job}, "open": 0}


# -- a world that is not there fails fast (issue 32) --------------------------------------------------

# env.spark.connect_timeout_seconds in these runs
CONNECT_TIMEOUT = 4.0
# leeway on it for the last retry, the log line and a loaded machine
GIVE_UP_LEEWAY = 3.0
# the most a process may take to end once it has said it gave up (it used to wait on the server again)
EXIT_LEEWAY = 5.0
# a run that has not ended by then hangs (the client alone retries for about ten minutes)
HANG = 180
# the fake Databricks Connect (tests/fakes/databricks_connect.py) for a whole script process
WITH_FAKE_DATABRICKS_CONNECT = (
    "import runpy, sys; from tests.fakes import databricks_connect; databricks_connect.install_for_process(); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture
def silent_server():
    """A loopback port whose listener accepts every connection and never says a word: a wedged
    server, or a port that is not Spark Connect's. Yields (port, the connections it accepted)."""
    import socket
    import threading

    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()


def logged_at(stderr: str, text: str) -> float:
    """When the first log line holding `text` was written (the scripts' format starts with asctime)."""
    import datetime as dt

    line = next((line for line in stderr.splitlines() if text in line), None)
    assert line is not None, f"no log line with {text!r}:\n{stderr[-3000:]}"
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_unreachable(python: str | Path, args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    """(the finished run, when it ended); TimeoutExpired when it does not end."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP=LOOPBACK)
    for name in ("DATABRICKS_RUNTIME_VERSION", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    args = [*args, f"env.storage_root={tmp_path}", f"env.spark.connect_timeout_seconds={CONNECT_TIMEOUT:g}"]
    result = subprocess.run([str(python), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG)
    return result, time.time()


def assert_gave_up(result: subprocess.CompletedProcess, ended: float, address: str) -> None:
    from mlops.errors import SparkUnreachableError

    told = result.stderr
    assert result.returncode == SparkUnreachableError.exit_code, f"exit {result.returncode}:\n{told[-4000:]}"
    failure = next(line for line in told.splitlines() if "extract failed" in line)
    # what, where, fix: the address, the key it came from, the key that bounds the wait, what to check
    assert address in failure and f"within {CONNECT_TIMEOUT:g} s" in failure, failure
    assert "where: env.spark.remote" in failure and "env.spark.connect_timeout_seconds" in failure, failure
    assert "fix: check that" in failure, failure
    for raw in ("Traceback", "RpcError", "StatusCode.", "RETRIES_EXCEEDED", "debug_error_string"):
        assert raw not in told, f"{raw!r} printed:\n{told[-4000:]}"
    waited = logged_at(told, "extract failed") - logged_at(told, f"connecting to {address}")
    assert CONNECT_TIMEOUT - 0.5 <= waited <= CONNECT_TIMEOUT + GIVE_UP_LEEWAY, waited
    assert ended - logged_at(told, "extract failed") <= EXIT_LEEWAY


def test_a_spark_connect_address_where_nothing_listens_fails_within_the_connect_timeout(tmp_path):
    from integration_tests.servers import free_port

    address = f"sc://{LOOPBACK}:{free_port()}"
    result, ended = run_unreachable(
        sys.executable, ["scripts/extract.py", "env=connect", f"env.spark.remote={address}"], tmp_path
    )
    assert_gave_up(result, ended, address)


def test_a_spark_connect_server_that_accepts_and_never_answers_fails_within_the_connect_timeout(
    silent_server, tmp_path
):
    port, accepted = silent_server
    address = f"sc://{LOOPBACK}:{port}"
    result, ended = run_unreachable(
        sys.executable, ["scripts/extract.py", "env=connect", f"env.spark.remote={address}"], tmp_path
    )
    assert accepted, "the client never connected: the case is not a silent server"
    assert_gave_up(result, ended, address)


def test_databricks_connect_to_a_silent_server_fails_within_the_connect_timeout_too(silent_server, tmp_path):
    """Our side of env/spark=databricks, with Databricks Connect replaced at its import by the fake
    (tests/fakes/databricks_connect.py), which makes a connection string's session as the SDK does."""
    port, accepted = silent_server
    address = f"sc://{LOOPBACK}:{port}"
    overrides = ["env=connect", "env/spark=databricks", f"env.spark.remote={address}"]
    result, ended = run_unreachable(
        sys.executable, ["-c", WITH_FAKE_DATABRICKS_CONNECT, "scripts/extract.py", *overrides], tmp_path
    )
    assert accepted
    assert_gave_up(result, ended, address)


def test_the_real_databricks_connect_client_gives_up_on_a_silent_server_too(dbconnect_python, silent_server, tmp_path):
    """The same through Databricks Connect 18 itself (the jobs' environment), whose client adds retry
    policies of its own (unknown errors, clusters that are starting) to the open-source ones."""
    port, accepted = silent_server
    address = f"sc://{LOOPBACK}:{port}"
    overrides = ["env=connect", "env/spark=databricks", f"env.spark.remote={address}"]
    result, ended = run_unreachable(dbconnect_python, ["scripts/extract.py", *overrides], tmp_path)
    assert accepted
    assert_gave_up(result, ended, address)


# the settings a session gets after the bounded first contact, and the retry policies it keeps
CONNECTED = """
import json, logging, sys
from pathlib import Path
from omegaconf import open_dict
from pyspark.sql.connect.client import SparkConnectClient
from mlops.config import compose_config
from mlops.runtime import get_spark

spark_cfg = compose_config(sys.argv[1:], config_dir=Path("conf").resolve()).env.spark  # the checkout's
if "conf" in spark_cfg:  # env/spark=connect's session settings (Databricks Connect takes none)
    with open_dict(spark_cfg):
        spark_cfg.conf = {"spark.sql.session.timeZone": "Asia/Tokyo"}  # not the server's zone
logging.basicConfig(level=logging.INFO)
spark = get_spark(spark_cfg)
fresh = SparkConnectClient(spark_cfg.remote)  # a new client, made without a call: its own policies
own = fresh.get_retry_policies()
fresh.close()
print(json.dumps({
    "zone": spark.conf.get("spark.sql.session.timeZone"),
    "rows": spark.range(3).count(),
    "policies": [type(p).__name__ for p in spark.client.get_retry_policies()],
    "own": [type(p).__name__ for p in own],
}))
spark.stop()
"""


@pytest.mark.parametrize("spark_world", ["connect", "databricks"])
def test_a_server_that_answers_gets_its_session_settings_and_the_clients_own_retries(
    spark_world, connect_server, request
):
    """The bound is for the first contact only: once connected, the session has the env's settings
    and the client's own retry policies again, which ride out a short outage as before; through
    PySpark's client and the real Databricks Connect 18 (whose client has policies of its own)."""
    python = sys.executable if spark_world == "connect" else request.getfixturevalue("dbconnect_python")
    address = f"sc://{LOOPBACK}:{connect_server.port}"
    overrides = ["env=connect", f"env/spark={spark_world}", f"env.spark.remote={address}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SPARK_LOCAL_IP=LOOPBACK)
    found = subprocess.run(
        [str(python), "-c", CONNECTED, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert found.returncode == 0, found.stderr[-3000:]
    connected = json.loads(found.stdout.strip().splitlines()[-1])
    assert connected["rows"] == 3 and f"over Spark Connect at {address}" in found.stderr
    assert connected["policies"] == connected["own"] and "DefaultPolicy" in connected["own"]
    if spark_world == "connect":
        assert connected["zone"] == "Asia/Tokyo"
