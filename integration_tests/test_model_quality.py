"""scripts/model_quality.py end to end on the bundled DE + FR sample: the out-of-time split that the
figures rest on, through the real stages, and a report that shows what was measured."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "lib" / "clv" / "data" / "online_retail_de_fr.csv.gz"
CUTOFF, VALIDATION = "2011-09-09", "2011-06-09"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, spark):
    module = load_script("model_quality")
    out = tmp_path_factory.mktemp("model_quality")
    results = module.main(["--data", str(SAMPLE), "--cutoffs", CUTOFF, "--models", "repurchase",
                           "--variants", "default", "--country-models", "--bootstrap", "20",
                           "--out", str(out), "--doc", str(out / "model_quality.md")], spark=spark)
    return module, results, out


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
    assert f"| Germany | {int(results['runs'][0]['metrics']['model']['Germany']['customers'])} | model | {auc:.3f} [" \
        in report
    assert "| United Kingdom | 0 | BG/NBD | — |" in report
