"""clv.studies.model_quality end to end on the bundled DE + FR sample: the out-of-time split that the
figures rest on, through the real stages, and a report that shows what was measured."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from clv.studies import model_quality
from mlops.config import compose_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "lib" / "clv" / "data" / "online_retail_de_fr.csv.gz"
CUTOFF, VALIDATION = "2011-09-09", "2011-06-09"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, spark):
    out = tmp_path_factory.mktemp("model_quality")
    cfg = compose_config(
        config_name="quality",
        overrides=[
            f"quality.data={SAMPLE}",
            f"quality.cutoffs=[{CUTOFF}]",
            "quality.models=[repurchase]",
            "quality.experiments=[default]",
            "quality.country_models=[]",
            "quality.bootstrap=20",
            f"quality.out={out}",
            f"quality.doc={out / 'model_quality.md'}",
        ],
    )
    results = model_quality.study(cfg, spark=spark)
    return model_quality, results, out


def _table(out: Path, name: str) -> pd.DataFrame:
    from deltalake import DeltaTable

    world = out / "world" / "pooled"  # the pooled training's world
    return pd.read_parquet(DeltaTable(str(world / "warehouse" / "local" / "clv" / name)).file_uris())


def test_the_last_split_tests_one_snapshot_and_trains_on_closed_horizons_only(evaluation):
    """The world keeps the last split made (the validation snapshot): the test table is exactly the
    customers who had bought by that date, and no training label looks past it."""
    _, _, out = evaluation
    train, test = _table(out, "clv_repurchase_train_all"), _table(out, "clv_repurchase_test_all")
    validation = dt.date.fromisoformat(VALIDATION)
    assert set(pd.to_datetime(test["snapshot_date"]).dt.date) == {validation}
    assert (pd.to_datetime(train["snapshot_date"]).dt.date + dt.timedelta(days=90)).max() <= validation
    lines = _table(out, "clv_transactions_all")
    bought = lines[~lines["is_return"] & (pd.to_datetime(lines["invoice_date"]).dt.date <= validation)]
    assert set(test["customer_id"]) == set(bought["customer_id"])


def test_figures_are_the_saved_scores_per_population(evaluation):
    _, results, out = evaluation
    runs = {entry["date"]: entry for entry in results["runs"]}
    assert set(runs) == {CUTOFF, VALIDATION} and runs[VALIDATION]["validation_for"] == [CUTOFF]
    assert results["choices"]["pooled"]["repurchase"][CUTOFF]["validation_date"] == VALIDATION
    scores = pd.read_parquet(out / "scores" / f"pooled_repurchase_default_{CUTOFF}.parquet")
    assert set(scores["country"]) == {"Germany", "France"}
    assert {"model", "BG/NBD", "heuristic"} <= set(scores.columns)
    figures = runs[CUTOFF]["metrics"]
    germany = scores[scores["country"] == "Germany"]
    assert figures["model"]["Germany"]["roc_auc"] == pytest.approx(roc_auc_score(germany["y"], germany["model"]))
    assert figures["BG/NBD"]["all"]["customers"] == len(scores)
    assert figures["model"]["United Kingdom"]["customers"] == 0
    assert json.loads((out / "model_quality.json").read_text())["choices"] == results["choices"]


def test_the_report_names_each_population_and_predictor(evaluation):
    _, results, out = evaluation
    report = (out / "model_quality.md").read_text()
    assert f"### test cutoff {CUTOFF}: variant `default` (chosen on validation snapshot {VALIDATION})" in report
    auc = results["runs"][0]["metrics"]["model"]["Germany"]["roc_auc"]
    assert (
        f"| Germany | {int(results['runs'][0]['metrics']['model']['Germany']['customers'])} | model | {auc:.3f} ["
        in report
    )
    assert "| United Kingdom | 0 | BG/NBD | — |" in report


def test_the_baselines_are_the_textbook_ones_fitted_on_the_test_snapshot(evaluation):
    """BG/NBD fitted on the calibration summary at the date (weeks, the 90-day horizon), and days since
    the last purchase as the heuristic: the figures the report compares the model with."""
    from clv.baselines import BGNBDBaseline

    _, _, out = evaluation
    scores = pd.read_parquet(out / "scores" / f"pooled_repurchase_default_{VALIDATION}.parquet")
    # the world's test table is the last split made: the validation snapshot, in the scores' order
    test = _table(out, "clv_repurchase_test_all").set_index("customer_id").loc[scores["customer_id"]].reset_index()
    expected = BGNBDBaseline(time_unit_days=7).fit(test).prob_repurchase(test, 90)
    np.testing.assert_array_equal(scores["BG/NBD"].to_numpy(), np.asarray(expected, dtype=float))
    np.testing.assert_array_equal(scores["heuristic"].to_numpy(), -test["days_since_last_purchase"].to_numpy(float))
