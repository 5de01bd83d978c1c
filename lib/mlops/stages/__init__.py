"""The stage functions that scripts and run_pipeline call: each takes a RunContext, returns a StageResult."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mlops.stages.batch_inference import batch_inference
from mlops.stages.evaluate import evaluate
from mlops.stages.extract import extract
from mlops.stages.features import features
from mlops.stages.load_sample import load_sample
from mlops.stages.monitor import monitor
from mlops.stages.promote import promote
from mlops.stages.split import split
from mlops.stages.train import train

if TYPE_CHECKING:
    from mlops.runtime import RunContext, StageResult

STAGES: dict[str, Callable[["RunContext"], "StageResult"]] = {
    "extract": extract,
    "features": features,
    "split": split,
    "train": train,
    "evaluate": evaluate,
    "batch_inference": batch_inference,
    "monitor": monitor,
    "promote": promote,
    "load_sample": load_sample,
}

# which stage makes each table: how a local run fills in missing inputs
PRODUCER: dict[str, str] = {
    "transactions": "extract",
    "features": "features",
    "labels": "features",
    "train": "split",
    "test": "split",
    "scoring_features": "batch_inference",
    "predictions": "batch_inference",
}
