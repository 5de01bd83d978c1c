"""A logged model together with what it needs to predict exactly as it did in training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.registry import check_model_uri, load_run_json, load_sklearn_model
from mlops.targets import target_from_dict


@dataclass
class ScoredModel:
    """A logged model with what it needs to predict like it did in training."""

    run_id: str
    model: Any
    target: Any
    features: list[str]
    # features training left out, with why (null or constant there), as the training run recorded them
    dropped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_run(cls, run_id: str, model_uri: str) -> ScoredModel:
        """The run's target and features with its model; the URI must be that run's, in the configured registry.

        `model_uri` comes from a run tag or a registry alias, so it is checked (ConfigError) before
        anything is read: a model from elsewhere, or another run's, is never paired with this run.
        """
        check_model_uri(model_uri, run_id=run_id)
        inputs = load_run_json(run_id, "config/model_inputs.json")
        target = target_from_dict(load_run_json(run_id, "config/target.json"))
        return cls(
            run_id, load_sklearn_model(model_uri), target, list(inputs["features"]), dict(inputs.get("dropped") or {})
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        proba = self.model.predict_proba(frame[self.features].astype("float64"))
        return self.target.predict(proba, self.model.classes_)
