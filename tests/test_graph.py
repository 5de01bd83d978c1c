"""The pipeline graph (conf/pipeline/batch.yaml, mlops.graph): what it derives, and the mistakes it refuses."""

from __future__ import annotations

import pytest

from mlops.config import compose_config
from mlops.errors import ConfigError
from mlops.graph import Graph


def graph_with(*overrides: str) -> Graph:
    return Graph.from_config(compose_config(list(overrides)))


def test_each_table_and_mlflow_output_has_the_stage_that_makes_it():
    graph = graph_with()
    assert graph.producer("transactions") == "extract"
    assert graph.producer("labels") == "features"
    assert graph.producer("mlflow:training_run") == "train"
    assert graph.producer("mlflow:champion") == "evaluate"  # the first writer; promote moves it by hand
    assert graph.producer("monitoring") == "monitor"
    assert graph.producer("no_such_table") is None
    assert graph.function("split").__module__ == "mlops.stages.split"


def test_the_jobs_come_from_the_graph():
    graph = graph_with()
    assert graph.jobs["model_training"].first == "extract"
    assert graph.jobs["model_training"].stages == ("features", "split", "train", "evaluate")
    assert graph.job_stages("model_training") == ("extract", "features", "split", "train", "evaluate")
    assert graph.job_stages("batch_inference") == ("extract", "batch_inference")
    assert graph.jobs["monitoring"].retrain == "model_training"
    assert graph.schedules["scoring"] == {"batch_inference": "batch_inference", "monitor": "monitoring"}
    assert graph.nightly_setup == "load_sample"


@pytest.mark.parametrize(
    ("overrides", "says", "where"),
    [
        (["pipeline.stages=[extract,featurs]"], "unknown stage(s) ['featurs']", "pipeline.stages"),
        (
            ["pipeline.stages=[features,extract]"],
            "'features' reads 'transactions' before 'extract' writes it",
            "pipeline.stages",
        ),
        (
            ["pipeline.jobs.model_training.stages=[split,features]"],
            "'split' reads 'features' before 'features' writes it",
            "pipeline.jobs.model_training.stages",
        ),
        (["pipeline.jobs.monitoring.retrain=training"], "retrain='training' is not another job", "conf/pipeline"),
        (
            ["pipeline.jobs.model_training.first=model_training"],
            "first='model_training' is not another job",
            "conf/pipeline",
        ),
        (
            ["+pipeline.jobs.extract.first=batch_inference"],
            "first='batch_inference' runs a job first itself",
            "conf/pipeline",
        ),
        (
            ["pipeline.schedules.training.tasks.train=model_trainig"],
            "['model_trainig'] are not jobs",
            "pipeline.schedules / pipeline.nightly",
        ),
        (
            ["pipeline.graph.monitor.reads=[predictions,forecasts]"],
            "reads ['forecasts'], which no stage writes",
            "pipeline.graph.monitor.reads",
        ),
    ],
)
def test_a_mistake_in_the_graph_fails_before_any_stage_runs(overrides, says, where):
    with pytest.raises(ConfigError) as caught:
        graph_with(*overrides)
    assert says in caught.value.message and caught.value.where == where


def test_the_runner_refuses_an_unknown_stage_before_anything_is_created(tmp_path):
    from mlops.cli import run_stages

    cfg = compose_config([f"env.storage_root={tmp_path}"])
    with pytest.raises(ConfigError, match="unknown stage"):
        run_stages(["extract", "trian"], cfg)
    assert not any(tmp_path.iterdir())
