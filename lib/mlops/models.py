"""A logged model together with what it needs to predict exactly as it did in training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.registry import load_run_json, load_sklearn_model
from mlops.targets import target_from_dict


@dataclass
class ScoredModel:
    """A logged model with what it needs to predict like it did in training."""

    run_id: str
    model: Any
    target: Any
    features: list[str]

    @classmethod
    def from_run(cls, run_id: str, model_uri: str) -> "ScoredModel":
        inputs = load_run_json(run_id, "config/model_inputs.json")
        target = target_from_dict(load_run_json(run_id, "config/target.json"))
        return cls(run_id, load_sklearn_model(model_uri), target, list(inputs["features"]))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        proba = self.model.predict_proba(frame[self.features].astype("float64"))
        return self.target.predict(proba, self.model.classes_)
