"""How many Spark jobs a stage starts: on small data the time goes to the per-action tax, not to
computing (docs/performance.md), and on Databricks serverless each action is also a round trip."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_GROUP, _DESCRIPTION = "spark.jobGroup.id", "spark.job.description"
_serial = itertools.count(1)


@dataclass
class JobCount:
    """Filled when the counted block ends; None where the session cannot tell (Spark Connect)."""

    jobs: int | None = None


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
    context.setJobGroup(group, f"stage {stage}")
    try:
        yield count
    finally:
        count.jobs = len(context.statusTracker().getJobIdsForGroup(group))
        context.setLocalProperty(_GROUP, outer[0])  # type: ignore[arg-type]  # None removes the property
        context.setLocalProperty(_DESCRIPTION, outer[1])  # type: ignore[arg-type]
        log.debug("stage %s: %d Spark jobs", stage, count.jobs)
