"""The rehearsal's run slots, as the Jobs API documents them: a job at `max_concurrent_runs` queues a
new run when its queue is enabled, and skips it otherwise; runs of different jobs overlap; tasks of
one job that are ready together run at the same time. A tiny bundle whose scripts sleep (or fail),
so the timing is the rehearsal's alone (no Spark)."""

from __future__ import annotations

import textwrap

import pytest

from integration_tests.rehearsal import Rehearsal, StandIns, load_bundle

BUNDLE = """
bundle: {name: queues}
include: [resources/*.yml]
targets: {t: {default: true}}
"""
JOBS = """
resources:
  jobs:
    shared:
      name: shared
      max_concurrent_runs: 1
      queue: {enabled: true}
      tasks:
        - task_key: work
          spark_python_task: {python_file: ../scripts/sleep.py}
    first_caller:
      name: first caller
      tasks:
        - task_key: shared
          run_job_task: {job_id: "${resources.jobs.shared.id}"}
    second_caller:
      name: second caller
      tasks:
        - task_key: shared
          run_job_task: {job_id: "${resources.jobs.shared.id}"}
    unqueued:
      name: unqueued
      max_concurrent_runs: 1
      tasks:
        - task_key: work
          spark_python_task: {python_file: ../scripts/sleep.py}
    branches:
      name: two branches after one task, one of them failing
      tasks:
        - task_key: start
          spark_python_task: {python_file: ../scripts/sleep.py}
        - task_key: left
          depends_on: [{task_key: start}]
          spark_python_task: {python_file: ../scripts/sleep.py}
        - task_key: right
          depends_on: [{task_key: start}]
          spark_python_task: {python_file: ../scripts/fail.py}
        - task_key: after_left
          depends_on: [{task_key: left}]
          spark_python_task: {python_file: ../scripts/sleep.py}
        - task_key: after_right
          depends_on: [{task_key: right}]
          spark_python_task: {python_file: ../scripts/sleep.py}
"""


@pytest.fixture
def rehearsal(tmp_path) -> Rehearsal:
    (tmp_path / "databricks.yml").write_text(BUNDLE, encoding="utf-8")
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "jobs.yml").write_text(JOBS, encoding="utf-8")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "sleep.py").write_text(textwrap.dedent("import time\ntime.sleep(1.5)\n"))
    (tmp_path / "scripts" / "fail.py").write_text("import sys, time\ntime.sleep(1.5)\nsys.exit(3)\n")
    stand_ins = StandIns(
        spark_remote="sc://127.0.0.1:1", mlflow_uri="http://127.0.0.1:1", mlflow_root=tmp_path / "mlflow"
    )
    with Rehearsal(load_bundle(tmp_path, "t"), stand_ins, tmp_path / "logs") as rehearsal:
        yield rehearsal


def test_two_callers_of_a_queued_job_take_turns(rehearsal):
    first, second = rehearsal.run_together(("first_caller", None), ("second_caller", None))
    assert first.succeeded and second.succeeded
    shared = sorted((run.tasks["shared"].child for run in (first, second)), key=lambda run: run.began)
    assert shared[0].ended <= shared[1].began, "two runs of a job with max_concurrent_runs 1 overlapped"
    assert shared[1].queued_seconds >= 1.0 and shared[0].queued_seconds < 1.0
    # the callers themselves (other jobs) ran at the same time
    assert first.began < second.ended and second.began < first.ended


def test_a_run_beyond_max_concurrent_runs_without_a_queue_is_skipped(rehearsal):
    runs = rehearsal.run_together(("unqueued", None), ("unqueued", None))
    assert sorted(run.skipped for run in runs) == [False, True]
    assert [run.succeeded for run in runs if not run.skipped] == [True]
    assert "SKIPPED" in next(run for run in runs if run.skipped).describe()


def test_tasks_ready_together_run_at_the_same_time_and_a_failure_stops_only_its_branch(rehearsal):
    run = rehearsal.run_job("branches")
    tasks = run.tasks
    assert list(tasks) == ["start", "left", "right", "after_left", "after_right"]
    assert {key: task.state for key, task in tasks.items()} == {
        "start": "SUCCESS",
        "left": "SUCCESS",
        "right": "FAILED",
        "after_left": "SUCCESS",
        "after_right": "UPSTREAM_FAILED",
    }
    # both branches began after their common upstream ended, and overlapped each other
    assert min(tasks["left"].began, tasks["right"].began) >= tasks["start"].ended
    assert tasks["left"].began < tasks["right"].ended and tasks["right"].began < tasks["left"].ended
    assert tasks["after_left"].began >= tasks["left"].ended
    assert "exited 3" in tasks["right"].detail and not run.succeeded
