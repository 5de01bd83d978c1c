"""RunContext: missing inputs, upstream runs, and all-or-nothing writes of a stage's outputs."""

from __future__ import annotations

import pytest
from omegaconf import open_dict
from pyspark.errors import PySparkException
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops.errors import ConfigError, DataQualityError, MissingInputError
from mlops.runtime import RunContext


def test_a_missing_input_is_an_error_where_upstream_runs_are_off(cfg, spark):
    with open_dict(cfg):
        cfg.env.run_missing_upstream = False
    ctx = RunContext.from_config(cfg, spark=spark)
    with pytest.raises(MissingInputError) as caught:
        ctx.read("train")
    assert "local.clv.clv_repurchase_train_de does not exist" in caught.value.message
    assert "run the split stage first" in caught.value.message


def test_an_unknown_table_key_is_a_config_error(ctx):
    with pytest.raises(ConfigError, match="use_case.tables.nonsense"):
        ctx.table_name("nonsense")


def test_a_name_that_could_inject_sql_never_reaches_spark(cfg, spark):
    with open_dict(cfg):
        cfg.use_case.tables.train = "train; DROP TABLE x"
    with pytest.raises(ConfigError, match="invalid table name"):
        RunContext.from_config(cfg, spark=spark).read("train")


def rows(spark, n):
    return spark.range(n).select(F.col("id").cast("string").alias("customer_id"), F.lit(1).alias("repurchase"))


def test_write_all_checks_every_contract_before_writing_anything(ctx, spark):
    ctx.write("train", rows(spark, 3))
    with pytest.raises(DataQualityError, match="no labelled rows for testing"):
        ctx.write_all({"train": rows(spark, 5), "test": rows(spark, 0)})
    assert ctx.tables.version(ctx.table_name("train")) == 0
    assert not ctx.tables.exists(ctx.table_name("test"))


def test_write_all_rolls_back_earlier_writes_when_a_later_one_fails(ctx, spark):
    ctx.write("train", rows(spark, 3))
    with open_dict(ctx.cfg):
        ctx.cfg.use_case.quality.test = []  # let the broken frame reach the write itself
    broken = rows(spark, 2).select("customer_id", F.raise_error(F.lit("executor lost")).alias("repurchase"))
    with pytest.raises(PySparkException, match="executor lost"):
        ctx.write_all({"train": rows(spark, 5), "test": broken})
    assertDataFrameEqual(ctx.read("train"), rows(spark, 3))
    assert not ctx.tables.exists(ctx.table_name("test"))


def test_write_returns_version_and_row_count(ctx, spark):
    assert ctx.write("train", rows(spark, 4)) == (0, 4)
    assert ctx.write("train", rows(spark, 2)) == (1, 2)
    assert ctx.input_versions("train", "test") == {"train": 1, "test": None}


def test_a_stage_writes_without_caching_where_the_env_forbids_it(ctx, spark, monkeypatch):
    # what serverless compute does with DataFrame cache calls: refuse them
    def refused(self, *args, **kwargs):
        raise PySparkException("[NOT_SUPPORTED_WITH_SERVERLESS] PERSIST TABLE is not supported on serverless compute")

    for method in ("cache", "persist", "unpersist"):
        monkeypatch.setattr(type(rows(spark, 1)), method, refused)  # the classic DataFrame, not the base class
    with open_dict(ctx.cfg):
        ctx.cfg.env.spark.persist = False
    ((_, count),) = ctx.write_all({"train": rows(spark, 4)}).values()
    assert count == 4


def test_a_stage_caches_a_reused_frame_only_where_the_env_allows(ctx, spark):
    cached = ctx.cache(rows(spark, 3))
    assert cached.is_cached and cached.count() == 3
    cached.unpersist()
    with open_dict(ctx.cfg):
        ctx.cfg.env.spark.persist = False
    assert not ctx.cache(rows(spark, 3)).is_cached


def test_a_new_version_may_not_shrink_far_below_the_current_one(ctx, spark, caplog):
    ctx.write("train", rows(spark, 10))
    with pytest.raises(DataQualityError, match="2 rows would replace the 10 of the current version") as caught:
        ctx.write("train", rows(spark, 2))
    assert "use_case.guards.allow_shrink=true" in caught.value.fix
    assert ctx.tables.version(ctx.table_name("train")) == 0
    ctx.write("train", rows(spark, 6))  # 40% fewer: within max_shrink_share=0.5
    with open_dict(ctx.cfg):
        ctx.cfg.use_case.guards.allow_shrink = True
    caplog.set_level("WARNING")
    assert ctx.write("train", rows(spark, 1)) == (2, 1)
    assert "allowed by use_case.guards.allow_shrink=true" in caplog.text


def test_a_per_date_replace_is_compared_with_the_rows_of_those_dates_only(ctx, spark):
    import datetime as dt

    def dated(n: int, day: dt.date):
        return rows(spark, n).withColumn("snapshot_date", F.lit(day))

    with open_dict(ctx.cfg):
        ctx.cfg.use_case.quality.train = []
    first, second = dt.date(2011, 1, 31), dt.date(2011, 2, 28)
    ctx.write("train", dated(10, first))
    ctx.write_all({"train": dated(2, second)}, replace_dates=("snapshot_date", [second]))  # a new date: no rows before
    with pytest.raises(DataQualityError, match="1 rows would replace the 10"):
        ctx.write_all({"train": dated(1, first)}, replace_dates=("snapshot_date", [first]))
    assert ctx.read("train").count() == 12


def test_a_stage_counts_its_own_spark_jobs_not_those_of_a_stage_it_runs_first(spark):
    from mlops.spark_jobs import counted

    context = spark.sparkContext
    with counted(spark, "outer") as outer:
        spark.range(3).collect()
        with counted(spark, "inner") as inner:
            spark.range(3).collect()
            spark.range(4).collect()
        spark.range(5).collect()
    assert (outer.jobs, inner.jobs) == (2, 2)
    # the session's jobs are ungrouped again afterwards
    assert context.getLocalProperty("spark.jobGroup.id") is None
    spark.range(2).collect()
    assert (outer.jobs, inner.jobs) == (2, 2)


def test_a_query_that_adaptive_execution_runs_as_several_jobs_counts_as_one_query(spark):
    from pyspark.sql import functions as F

    from mlops.spark_jobs import counted

    keyed = spark.range(100).withColumn("k", F.col("id") % 7)
    with counted(spark, "grouped") as grouped:
        keyed.groupBy("k").count().collect()  # a shuffle: a map stage's job, then the result's
        keyed.agg(F.max("id")).collect()
    with counted(spark, "plain") as plain:
        spark.range(3).collect()
    assert grouped.queries == 2 and grouped.jobs is not None and grouped.jobs > grouped.queries
    assert (plain.jobs, plain.queries) == (1, 1)


def test_a_frame_checked_by_its_stage_is_written_without_a_second_check_or_count(ctx, spark):
    from mlops.spark_jobs import counted

    ctx.write("train", rows(spark, 10))
    frame = rows(spark, 9)
    measured = ctx.check(frame, ctx.suite("train"), table="train", measures={"ids": F.count_distinct("customer_id")})
    assert measured == {"ids": 9}
    before = len(ctx.validations)
    with counted(spark, "write") as jobs:
        assert ctx.write("train", frame) == (1, 9)
    # the contract's pass gave the shrink guard its count, the Delta log the rows written: the
    # write is the only query (a validation would add a record, a count a query)
    assert len(ctx.validations) == before and jobs.queries == 1


# ---- a remote world that is not there (issue 32; the real runs: integration_tests/test_remote.py) ----


@pytest.mark.parametrize("env,world", [("connect", "ConnectSpark"), ("dev", "DatabricksSpark")])
def test_connecting_to_a_remote_world_gives_up_after_a_minute_unless_the_config_says_otherwise(env, world):
    import inspect

    from mlops import worlds
    from mlops.config import build, compose_config

    spark_cfg = compose_config([f"env={env}"]).env.spark
    assert spark_cfg.connect_timeout_seconds == 60
    built = build(spark_cfg)  # the world only: nothing connects before session()
    assert type(built) is getattr(worlds, world) and built.connect_timeout_seconds == 60.0
    # a config without the key gets the same minute
    assert inspect.signature(type(built)).parameters["connect_timeout_seconds"].default == 60.0
    with open_dict(spark_cfg):
        spark_cfg.connect_timeout_seconds = 5
    assert build(spark_cfg).connect_timeout_seconds == 5.0


@pytest.mark.parametrize("value", [0, -1, "soon", None])
def test_a_connect_timeout_that_is_not_a_positive_number_is_a_config_error(value):
    from mlops.config import build, compose_config

    spark_cfg = compose_config(["env=connect"]).env.spark
    with open_dict(spark_cfg):
        spark_cfg.connect_timeout_seconds = value
    with pytest.raises(ConfigError) as caught:
        build(spark_cfg)
    assert "where: env.spark.connect_timeout_seconds" in caught.value.message
    assert f"connect_timeout_seconds={value}" in caught.value.message


def test_databricks_connect_getting_no_answer_while_it_starts_the_session_is_unreachable_not_a_config_error(
    tmp_path, monkeypatch
):
    """Serverless: Databricks Connect asks the server its version inside getOrCreate, under its own
    retries; when those give up, PySpark raises the gRPC call's repr as the message (as here)."""
    import grpc
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    from mlops.config import compose_config
    from mlops.errors import SparkUnreachableError
    from mlops.runtime import get_spark
    from tests.fakes import databricks_connect as fake_connect

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    fake = fake_connect.install(monkeypatch)
    reason = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:443: Connection refused"
    fake.fail_with = SparkConnectGrpcException(
        message=f'<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n\tdetails = "{reason}"\n>',
        grpc_status_code=grpc.StatusCode.UNAVAILABLE,
    )
    spark_cfg = compose_config(["env=dev"]).env.spark
    with open_dict(spark_cfg):
        spark_cfg.profile, spark_cfg.serverless = "ml-dev", True
    with pytest.raises(SparkUnreachableError) as caught:
        get_spark(spark_cfg)
    message = caught.value.message
    assert f"Databricks Connect got no answer from the workspace: {reason}" in message
    assert "where: env.spark.profile / DATABRICKS_HOST" in message and "fix: check the workspace host" in message
    assert "_InactiveRpcError" not in message and "StatusCode" not in message
    # an answer that is an error of the server's own stays the config error it was
    fake.fail_with = SparkConnectGrpcException(
        message="PERMISSION_DENIED: no", grpc_status_code=grpc.StatusCode.PERMISSION_DENIED
    )
    with pytest.raises(ConfigError, match="could not start a session: PERMISSION_DENIED"):
        get_spark(spark_cfg)


# A local session built from the composed config (env/spark=local), then one job long enough for
# Spark's ConsoleProgressBar (it shows a stage that has run for 500 ms).
_LONG_JOB = """
import sys
from hydra.utils import instantiate
from mlops.config import compose_config
cfg = compose_config([f"env.storage_root={sys.argv[1]}"])
spark = instantiate(cfg.env.spark).session()
spark.range(0, 400_000_000, numPartitions=4).selectExpr("sum(id % 7)").collect()
"""


def _run_long_job(tmp_path, terminal: bool) -> str:
    """stdout and stderr of the long job, at a pseudo-terminal or into a pipe."""
    import os
    import pty
    import subprocess
    import sys

    env = {
        key: value for key, value in os.environ.items() if key not in ("CI", "TF_BUILD", "DATABRICKS_RUNTIME_VERSION")
    }
    command = [sys.executable, "-c", _LONG_JOB, str(tmp_path / "root")]
    if not terminal:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=True).stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: every process holding it has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_a_person_at_a_terminal_sees_sparks_progress_bar_and_a_log_does_not(tmp_path):
    assert "[Stage 0:" in _run_long_job(tmp_path, terminal=True)
    assert "[Stage " not in _run_long_job(tmp_path, terminal=False)
