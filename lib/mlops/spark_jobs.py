"""How many Spark jobs a stage starts: on small data the time goes to the per-action tax, not to
computing (docs/performance.md), and on Databricks serverless each action is also a round trip."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_GROUP, _DESCRIPTION = "spark.jobGroup.id", "spark.job.description"
_serial = itertools.count(1)


@dataclass
class JobCount:
    """Filled when the counted block ends; None where the session cannot tell (Spark Connect).

    `queries` are the actions (one SQL execution each, plus any job outside one): each is a
    round trip on Databricks serverless. `jobs` also counts what one query runs as several jobs:
    adaptive execution starts a job per shuffle or broadcast stage of the query.
    """

    jobs: int | None = None
    queries: int | None = None


@contextmanager
def counted(spark: SparkSession, stage: str) -> Iterator[JobCount]:
    """Give the block's jobs a job group of their own and count them when it ends.

    A stage run from within another (a missing input's producer) takes its own group and gives
    the outer one back, so each stage counts only its own jobs, as it times only its own seconds.
    Spark Connect has no SparkContext on the client and no status tracker to ask: there the count
    stays None rather than a made-up 0.
    """
    count = JobCount()
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect and Databricks Connect sessions
        yield count
        return
    outer = context.getLocalProperty(_GROUP), context.getLocalProperty(_DESCRIPTION)
    group = f"{stage}-{next(_serial)}"
    before = _latest_execution(spark)
    context.setJobGroup(group, f"stage {stage}")
    try:
        yield count
    finally:
        jobs = set(context.statusTracker().getJobIdsForGroup(group))
        count.jobs = len(jobs)
        count.queries = _queries(spark, jobs, after=before)
        context.setLocalProperty(_GROUP, outer[0])  # type: ignore[arg-type]  # None removes the property
        context.setLocalProperty(_DESCRIPTION, outer[1])  # type: ignore[arg-type]
        log.debug("stage %s: %d Spark jobs in %s queries", stage, count.jobs, count.queries)


def _executions(spark: SparkSession) -> Any:
    """Spark's own record of the SQL executions (what its UI's SQL tab lists), kept without a UI."""
    return spark._jsparkSession.sharedState().statusStore()


def _latest_execution(spark: SparkSession) -> int:
    try:
        store = _executions(spark)
        count = store.executionsCount()
        return int(store.executionsList(count - 1, 1).head().executionId()) if count else -1
    except Exception:  # a session without the SQL store: queries stay uncounted
        return -1


def _queries(spark: SparkSession, jobs: set[int], *, after: int) -> int | None:
    """The SQL executions since `after` that ran any of `jobs`, plus the jobs that ran in none."""
    try:
        store = _executions(spark)
        count, latest = store.executionsCount(), _latest_execution(spark)
        # execution ids run in sequence: the newest `latest - after` are this block's, or later
        new = min(max(latest - after, 0), count)
        recent = store.executionsList(count - new, new)
        seen: set[int] = set()
        queries = 0
        for index in range(recent.size() - 1, -1, -1):
            execution = recent.apply(index)
            if int(execution.executionId()) <= after:
                break
            ran = {int(job) for job in _iterate(execution.jobs().keySet())}
            if ran & jobs:
                queries += 1
                seen |= ran
        return queries + len(jobs - seen)
    except Exception as exc:
        log.debug("no SQL execution count: %s", str(exc).splitlines()[0][:200])
        return None


def _iterate(scala_set: Any) -> Iterator[Any]:
    iterator = scala_set.iterator()
    while iterator.hasNext():
        yield iterator.next()
