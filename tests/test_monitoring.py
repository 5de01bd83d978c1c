"""Monitoring decisions: the retrain rule, drift rows from a shifted input, the task value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops.drift import profile
from mlops.stages.monitor import drift_rows, retrain_required

D = [dt.date(2011, m, 9) for m in range(1, 7)]


def test_retrain_rule_needs_enough_recent_violations_including_the_latest():
    assert retrain_required({D[0]: False, D[1]: True, D[2]: True}, violations=2, windows=3)
    assert not retrain_required({D[0]: True, D[1]: True, D[2]: False}, violations=2, windows=3)  # latest is fine
    assert not retrain_required({D[0]: False, D[1]: False, D[2]: True}, violations=2, windows=3)  # a blip
    # only the last `windows` dates count
    assert not retrain_required({D[0]: True, D[1]: True, D[2]: False, D[3]: False, D[4]: True}, 2, 3)
    assert not retrain_required({}, 1, 3)


def scoring(shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for day in D[:3]:
        frames.append(
            pd.DataFrame(
                {
                    "scoring_date": day,
                    "run_id": "r1",
                    "model_version": "1",
                    "recency": rng.exponential(30, 2000) + shift,
                    "spend": rng.gamma(2, 50, 2000),
                    "score": rng.beta(2, 5, 2000),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_a_drifted_input_is_flagged_and_an_undrifted_one_is_not():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"recency": rng.exponential(30, 5000), "spend": rng.gamma(2, 50, 5000)})
    profiles = {"r1": {"features": profile(train), "score": profile(pd.DataFrame({"score": rng.beta(2, 5, 5000)}))}}

    calm = pd.DataFrame(
        drift_rows(scoring(0.0, 1), profiles, 0.25, "scoring_date"),
        columns=["day", "metric", "subject", "value", "threshold", "violated", "rows", "version"],
    )
    assert not calm["violated"].any() and calm["value"].max() < 0.05

    shifted = pd.DataFrame(drift_rows(scoring(40.0, 2), profiles, 0.25, "scoring_date"), columns=calm.columns)
    flags = shifted.set_index(["day", "subject"])["violated"]
    assert all(flags[(day, "recency")] for day in D[:3])
    assert not any(flags[(day, "spend")] for day in D[:3])
    by_date = shifted.groupby("day")["violated"].any().to_dict()
    assert retrain_required(by_date, violations=2, windows=3)
    assert not retrain_required(calm.groupby("day")["violated"].any().to_dict(), violations=2, windows=3)
