"""Real servers for the remote tests (Spark, and the rehearsal's MLflow), on 127.0.0.1 only, always stopped.

The pyspark wheel ships the Spark Connect server (`sbin/start-connect-server.sh`) and the
standalone master and worker classes (started through `sbin/spark-daemon.sh`; the wheel has no
start-master.sh). Each server gets its own pid, log, warehouse and Derby folders under a temp
dir, so a run leaves nothing behind and parallel runs do not meet. `stop()` kills by the
recorded PID and is safe to call twice, from a fixture's teardown even when a test failed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.timing import timed

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, log_dir: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.5)
    logs = "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(log_dir.glob("*.out")))
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f} s; server log:\n{logs}")


@dataclass
class SparkDaemon:
    """One `spark-daemon.sh` process: its identity, folders and PID."""

    name: str
    root: Path
    port: int
    pids: list[int] = field(default_factory=list)
    # the interpreter of the Python workers (UDFs): by default this one, so they see the tests' packages
    python: str = sys.executable

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SPARK_HOME": str(spark_home()),
                "SPARK_PID_DIR": str(self.root / "pid"),
                "SPARK_LOG_DIR": str(self.root / "log"),
                "SPARK_IDENT_STRING": self.name,
                "SPARK_LOCAL_IP": LOOPBACK,
                "PYSPARK_PYTHON": self.python,
            }
        )
        if self.python != sys.executable:
            env["PYTHONPATH"] = str(self._worker_modules())
        return env

    def _worker_modules(self) -> Path:
        """Another interpreter's workers still need this Spark's own Python side (pyspark, py4j: pure
        Python); a folder of links to them, ahead of that interpreter's packages, gives it them and
        nothing else of this environment's."""
        import py4j

        folder = self.root / "worker-modules"
        folder.mkdir(parents=True, exist_ok=True)
        for module in (spark_home(), Path(py4j.__file__).resolve().parent):
            link = folder / module.name
            if not link.exists():
                link.symlink_to(module)
        return folder

    def _record_pids(self) -> None:
        for pid_file in (self.root / "pid").glob("*.pid"):
            pid = int(pid_file.read_text().strip())
            if pid not in self.pids:
                self.pids.append(pid)

    def run(self, args: list[str], timeout: float = 120) -> None:
        for folder in ("pid", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(args, env=self.env, check=True, capture_output=True, timeout=60)
        self._record_pids()
        _wait_for_port(self.port, timeout, self.root / "log")

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 20
        for pid in self.pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in sorted((self.root / "log").glob("*.out")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


@timed("Spark Connect server start")
def start_connect_server(
    root: Path, port: int | None = None, master: str = "local[2]", python: str | Path | None = None
) -> SparkDaemon:
    """A Spark Connect server with a Hive catalog (Derby metastore) under `root`, so tables persist
    across client sessions exactly as in a workspace's catalog.

    `python`: the interpreter its Python workers run UDFs with. Spark requires the client's and the
    workers' Python minor versions to match, and the UDFs need the client's packages (the model's
    libraries), as a serverless task's UDFs run in the task's own environment; a Databricks Connect
    client from the jobs' environment therefore gets workers of that environment's Python.
    """
    port = port or free_port()
    daemon = SparkDaemon(name=f"connect-{port}", root=root, port=port, python=str(python or sys.executable))
    warehouse, derby = root / "warehouse", root / "derby"
    warehouse.mkdir(parents=True, exist_ok=True)
    derby.mkdir(parents=True, exist_ok=True)
    daemon.run(
        [
            str(spark_home() / "sbin" / "start-connect-server.sh"),
            "--master",
            master,
            "--conf",
            f"spark.connect.grpc.binding.address={LOOPBACK}",
            "--conf",
            f"spark.connect.grpc.binding.port={port}",
            "--conf",
            f"spark.driver.host={LOOPBACK}",
            "--conf",
            f"spark.driver.bindAddress={LOOPBACK}",
            "--conf",
            "spark.sql.catalogImplementation=hive",
            "--conf",
            f"spark.sql.warehouse.dir={warehouse}",
            "--conf",
            f"spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={derby}/metastore_db;create=true",
            "--conf",
            f"spark.driver.extraJavaOptions=-Dderby.system.home={derby}",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.sql.shuffle.partitions=4",
            # Appends of two jobs to one table (the write journal) never conflict in a workspace:
            # INSERT against INSERT "cannot conflict" under either isolation level
            # (docs.databricks.com/optimizations/isolation-level.html). The stand-in's Parquet tables share one
            # `_temporary` folder, which the first job to commit deletes under the other one's
            # task; committing each task's files directly (v2) and leaving that folder in place
            # (read paths skip `_` names) keeps concurrent appends whole, as Delta keeps them.
            "--conf",
            "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version=2",
            "--conf",
            "spark.hadoop.mapreduce.fileoutputcommitter.cleanup.skipped=true",
        ]
    )
    log.info("Spark Connect server on sc://%s:%d (pids %s)", LOOPBACK, port, daemon.pids)
    return daemon


@timed("Spark standalone cluster start")
def start_standalone_cluster(root: Path) -> tuple[SparkDaemon, SparkDaemon]:
    """A standalone master and one worker (2 cores) bound to loopback; returns (master, worker)."""
    master_port, worker_port = free_port(), free_port()
    daemon_sh = str(spark_home() / "sbin" / "spark-daemon.sh")
    master = SparkDaemon(name=f"master-{master_port}", root=root / "master", port=master_port)
    master.run(
        [
            daemon_sh,
            "start",
            "org.apache.spark.deploy.master.Master",
            "1",
            "--host",
            LOOPBACK,
            "--port",
            str(master_port),
            "--webui-port",
            str(free_port()),
        ]
    )
    worker = SparkDaemon(name=f"worker-{worker_port}", root=root / "worker", port=worker_port)
    try:
        worker.run(
            [
                daemon_sh,
                "start",
                "org.apache.spark.deploy.worker.Worker",
                "1",
                "--host",
                LOOPBACK,
                "--port",
                str(worker_port),
                "--webui-port",
                str(free_port()),
                "--cores",
                "2",
                "--memory",
                "2g",
                "--work-dir",
                str(root / "worker" / "work"),
                f"spark://{LOOPBACK}:{master_port}",
            ]
        )
    except BaseException:
        master.stop()
        raise
    return master, worker


@dataclass
class MlflowServer:
    """`mlflow server` over a sqlite store: the workspace's tracking server and registry in the rehearsal.

    A workspace's MLflow is a server that jobs reach over REST, whatever MLflow version a job's
    environment resolved. Sharing one sqlite file instead would tie every client to one schema: the
    jobs' environment (pinned beside Databricks Connect) and the development one resolve different
    MLflow releases, and the newer one silently migrates the store the older one then refuses.
    """

    root: Path
    port: int
    process: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@timed("MLflow server start")
def start_mlflow_server(root: Path, python: str | Path, timeout: float = 120) -> MlflowServer:
    """An MLflow server of `python`'s MLflow on 127.0.0.1, store and artifacts under `root`.

    One worker and no job execution (MLflow's server-side job runner, which nothing here submits).
    Artifacts go where each experiment's artifact location says (a local folder the clients write
    directly), as a workspace's clients write to its artifact storage, not through the server.
    """
    port = free_port()
    (root / "log").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("PYTHONPATH", None)
    with open(root / "log" / "mlflow-server.out", "wb") as out:
        process = subprocess.Popen(
            [
                str(python),
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{root}/mlflow.db",
                "--default-artifact-root",
                (root / "artifacts").as_uri(),
                "--no-serve-artifacts",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(root, port, process)
    try:
        _wait_for_port(port, timeout, root / "log")
    except TimeoutError:
        server.stop()
        raise
    log.info("MLflow server on %s (pid %d)", server.uri, process.pid)
    return server
