"""Bad input through the real scripts: each case exits non-zero with a message that names the
problem, where it is and what to do, and leaves every table version and model alias as it was.

The cases are data (CASES); docs/reliability.md holds the same table, and a test fails when the
two differ (`python -m integration_tests.test_bad_input` rewrites the document).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import runpy
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
BUNDLED = REPO / "lib" / "clv" / "data" / "online_retail_de_fr.csv.gz"
# Germany's first months: a small source keeps each failing run short
BASE_ROWS = 4000

pytestmark = pytest.mark.integration


def _base() -> pd.DataFrame:
    frame = pd.read_csv(BUNDLED, dtype=str, keep_default_na=False)
    return frame[frame["Country"] == "Germany"].head(BASE_ROWS).reset_index(drop=True)


def _with(column: str, value: str, rows: int = 5) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[frame.index[100:100 + rows], column] = value
        return frame
    return change


@dataclass(frozen=True)
class Case:
    id: str
    input: str                       # what is wrong, for the document
    script: str
    overrides: tuple[str, ...] = ()
    source: Callable[[pd.DataFrame], pd.DataFrame] | str | None = None   # a change of the base, or a raw kind
    exit_code: int = 3
    says: tuple[str, ...] = ()       # fragments the message must contain (what, where, fix)
    world: str = "good"              # good: after a full good run | fresh: nothing yet
    outcome: str = ""                # what happens, for the document
    process: bool = False            # True: a separate process, as a job runs it; else the same script in-process

    def source_path(self, folder: Path) -> Path | None:
        if self.source is None:
            return None
        path = folder / f"{self.id}.csv.gz"
        if self.source == "missing":
            return folder / "no-such-file.csv.gz"
        if self.source == "corrupt_gzip":
            whole = gzip.compress(_base().to_csv(index=False).encode())
            path.write_bytes(whole[: len(whole) // 2])
            return path
        if self.source == "empty":
            frame = _base().head(0)
        else:
            frame = self.source(_base())  # type: ignore[operator]
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            frame.to_csv(handle, index=False)
        return path


def _one_class(frame: pd.DataFrame) -> pd.DataFrame:
    # every customer buys every week for two years: every label is "will repurchase"
    rows = []
    for customer in range(12500, 12530):
        for week in range(105):
            day = pd.Timestamp("2010-01-04") + pd.Timedelta(weeks=week)
            rows.append({"Invoice": f"{customer}{week:03d}", "StockCode": "85123A", "Description": "HEART",
                         "Quantity": "2", "InvoiceDate": f"{day:%Y-%m-%d} 10:00:00", "Price": "2.55",
                         "Customer ID": str(customer), "Country": "Germany"})
    return pd.DataFrame(rows, columns=frame.columns)


def _few_customers(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["Customer ID"].isin(frame["Customer ID"].drop_duplicates().head(3))]


CASES: list[Case] = [
    Case("missing_column", "source without the Quantity column", "extract.py", source=lambda f: f.drop(columns="Quantity"),
         says=("expect_table_columns_to_match_set", "Quantity", "use_case.source.columns"),
         outcome="source contract fails before anything is written"),
    Case("renamed_column", "Quantity renamed to Qty", "extract.py", source=lambda f: f.rename(columns={"Quantity": "Qty"}),
         says=("Quantity", "map the source's column names"), outcome="source contract fails"),
    Case("text_quantity", "text in Quantity", "extract.py", source=_with("Quantity", "three"),
         says=("quantity must be a whole number",), outcome="source contract fails, with the failing count"),
    Case("unparseable_dates", "InvoiceDate not a timestamp", "extract.py", source=_with("InvoiceDate", "31/12/2010 25:61"),
         says=("invoice dates must be ISO timestamps", "InvoiceDate"), outcome="source contract fails"),
    Case("no_customer_ids", "every Customer ID empty", "extract.py", source=lambda f: f.assign(**{"Customer ID": ""}),
         says=("no transactions left for country Germany",), outcome="transactions contract fails (no rows)"),
    Case("negative_prices", "negative prices", "extract.py", source=_with("Price", "-2.55"),
         says=("negative prices are accounting adjustments",), outcome="transactions contract fails"),
    Case("zero_quantities", "zero quantities", "extract.py", source=_with("Quantity", "0"),
         says=("zero quantity is not a sale or a return",), outcome="transactions contract fails"),
    Case("future_dates", "sales dated in 2099", "extract.py", source=_with("InvoiceDate", "2099-01-01 10:00:00"),
         says=("dated after this run started", "invoices", "timezone"), outcome="guard fails, naming 3 invoices"),
    Case("duplicated_source", "the same extract twice", "extract.py", source=lambda f: pd.concat([f, f]),
         says=("exact duplicates", "loaded twice", "max_duplicate_share"), outcome="guard fails"),
    Case("pooled_country_absent", "pooled, a country the source lacks", "extract.py",
         ("country.training_population=pooled", "country.source_value=Atlantis"),
         says=("no transactions of 'Atlantis'", "country.source_value"),
         outcome="guard fails; every country kept, none of them the home country"),
    Case("empty_source", "header only", "extract.py", source="empty",
         says=("the source is empty",), outcome="source contract fails"),
    Case("missing_file", "source path does not exist", "extract.py", source="missing", exit_code=5,
         says=("does not exist", "use_case.source.path"), outcome="source error before Spark reads", process=True),
    Case("corrupt_gzip", "truncated .csv.gz", "extract.py", source="corrupt_gzip", exit_code=5,
         says=("cannot read csv source", "not a complete gzip file", "cut off or damaged"),
         outcome="source error; before the fix Spark read it quietly as an empty source"),
    Case("unknown_country", "country=XX", "extract.py", ("country=XX",), exit_code=1,
         says=("Could not find 'country/XX'", "Available options"), outcome="Hydra refuses the override",
         process=True),  # Hydra re-raises instead of exiting when a tracer (coverage) is active
    Case("zero_horizon", "model.horizon_days=0", "train.py", ("model.horizon_days=0",), exit_code=2,
         says=("model.horizon_days=0 is outside", "horizon"), outcome="config check, before Spark starts", process=True),
    Case("sample_fraction_zero", "env.sample_fraction=0", "split.py", ("env.sample_fraction=0",), exit_code=2,
         says=("env.sample_fraction=0", "(0, 1]"), outcome="config check"),
    Case("sample_fraction_above_one", "env.sample_fraction=1.5", "split.py", ("env.sample_fraction=1.5",), exit_code=2,
         says=("env.sample_fraction=1.5",), outcome="config check"),
    Case("negative_seed", "seed=-1", "train.py", ("seed=-1",), exit_code=2, says=("seed=-1",), outcome="config check"),
    Case("threshold_above_one", "gate ROC-AUC minimum 1.5", "evaluate.py", ("model.gate.thresholds.roc_auc.min=1.5",),
         exit_code=2, says=("model.gate.thresholds.roc_auc.min=1.5 is outside [0, 1]",), outcome="config check"),
    Case("inference_threshold", "inference threshold 2", "batch_inference.py", ("model.inference.threshold=2",),
         exit_code=2, says=("model.inference.threshold=2",), outcome="config check"),
    Case("sql_in_table_name", "a table name with SQL", "extract.py",
         ("use_case.tables.transactions='t; DROP TABLE x'",), exit_code=2,
         says=("invalid table name", "letters, digits and underscores"), outcome="refused before any SQL"),
    Case("sql_in_model_name", "a model name with SQL", "evaluate.py",
         ("use_case.registered_model='local.clv.x; DROP TABLE y --clv_repurchase_de'",), exit_code=2,
         says=("invalid table name",), outcome="refused before the registry is asked"),
    Case("one_class_labels", "every customer repurchases", "run_pipeline.py",
         ("pipeline.stages=[extract,features,split,train]", "env.sample_fraction=1.0"), source=_one_class, exit_code=6,
         says=("only label value(s) [1]", "use more data"), world="fresh", outcome="training refuses one class"),
    Case("too_few_customers", "three customers", "run_pipeline.py",
         ("pipeline.stages=[extract,features,split,train,evaluate]",), source=_few_customers, exit_code=3,
         says=("no labelled rows",), world="fresh", outcome="split contract fails: no test rows"),
    Case("no_champion", "scoring a model that was never promoted", "batch_inference.py",
         ("model=ltv_bucket", "env.run_missing_upstream=false"), exit_code=4,
         says=("has no champion", "run evaluate"), outcome="missing input, on Databricks envs"),
    Case("scoring_before_data", "scoring_date=2000-01-31", "batch_inference.py", ("scoring_date=2000-01-31",),
         exit_code=2, says=("come before the first transaction",), outcome="config error, nothing scored"),
]


# -- running ------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    returncode: int
    stderr: str
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def world_state(root: Path) -> dict:
    """Every Delta table's version and every registered model's versions and aliases under root."""
    from deltalake import DeltaTable

    state: dict = {"tables": {}, "models": {}}
    warehouse = root / "warehouse"
    if warehouse.exists():
        for path in sorted(p for p in warehouse.glob("*/*/*") if (p / "_delta_log").exists()):
            state["tables"][path.name] = DeltaTable(str(path)).version()
    database = root / "mlflow" / "mlflow.db"
    if database.exists():
        import sqlite3

        with sqlite3.connect(database) as connection:
            state["models"] = {
                "versions": sorted(connection.execute("SELECT name, version FROM model_versions").fetchall()),
                "aliases": sorted(connection.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()),
            }
    return state


def run_script(script: str, overrides: list[str], cwd: Path, process: bool) -> tuple[int, str]:
    """(exit code, stderr) of `python scripts/<script> <overrides>`.

    In a separate process when `process`; otherwise the same script's `__main__` in this process
    (Hydra, the stage, the exit code and the log all as in a job, minus a Python and Spark start
    per case), with stderr captured from where Hydra's logging writes.
    """
    path = REPO / "scripts" / script
    if process:
        result = subprocess.run([sys.executable, str(path), *overrides], cwd=cwd,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True, text=True,
                                timeout=900)
        return result.returncode, result.stderr
    stderr, argv = io.StringIO(), sys.argv
    sys.argv = [str(path), *overrides]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stderr(stderr):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    except Exception as error:  # an unexpected traceback is a failure of the case, shown in full
        code, stderr = 99, io.StringIO(stderr.getvalue() + "Traceback\n" + "".join(traceback.format_exception(error)))
    finally:
        sys.argv = argv
    return (code if isinstance(code, int) else 1), stderr.getvalue()


def run_case(case: Case, root: Path, folder: Path) -> Outcome:
    overrides = [f"env.storage_root={root}", "country=DE", *case.overrides]
    source = case.source_path(folder)
    if source is not None:
        overrides += ["use_case.source.kind=csv", f"use_case.source.path={source}"]
    before = world_state(root)
    code, stderr = run_script(case.script, overrides, folder, case.process)
    return Outcome(code, stderr, before, world_state(root))


@pytest.fixture(scope="module")
def good_root(de_pipelines) -> Path:
    """A complete good world for DE repurchase (every table, a champion): the session's shared run."""
    return Path(de_pipelines["repurchase"]["ctx"].cfg.env.storage_root)


@pytest.fixture(scope="module")
def outcomes(good_root, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, one after the other: each compares the world before and after itself."""
    results = {}
    for case in CASES:
        folder = tmp_path_factory.mktemp(case.id)
        results[case.id] = run_case(case, good_root if case.world == "good" else folder / "root", folder)
    logging.getLogger().handlers.clear()  # the scripts pointed the log at their captured stderr
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_fails_clearly_and_loses_nothing(case, outcomes):
    outcome = outcomes[case.id]
    assert outcome.returncode == case.exit_code, f"exit {outcome.returncode}:\n{outcome.stderr[-4000:]}"
    for fragment in case.says:
        assert fragment in outcome.stderr, f"{fragment!r} not in:\n{outcome.stderr[-4000:]}"
    if case.exit_code != 1:  # our own errors: one line with what, where and fix; no traceback
        assert "Traceback" not in outcome.stderr
        assert " | where: " in outcome.stderr and " | fix: " in outcome.stderr
    if case.world == "good":
        assert outcome.after == outcome.before, "a failed run changed a table or a model alias"
    else:
        assert outcome.after["models"].get("versions", []) == [], "a model was registered from bad data"


def test_error_messages_do_not_dump_customer_rows(outcomes):
    """Counts and a few keys, never whole rows: no customer id next to its prices and dates."""
    for case_id, outcome in outcomes.items():
        lines = [line for line in outcome.stderr.splitlines() if "Germany" in line and "85123A" in line]
        assert not lines, f"{case_id} printed source rows: {lines[:2]}"


# -- the document -------------------------------------------------------------------------------------

def render_doc() -> str:
    rows = "\n".join(
        f"| `{case.id}` | {case.input} | `{case.script}` | {case.exit_code} | {case.outcome} | "
        f"{'; '.join(f'`{s}`' for s in case.says)} |" for case in CASES)
    return (
        "# Reliability: what bad input does\n\n"
        "Generated from `integration_tests/test_bad_input.py` (`python -m integration_tests.test_bad_input`);\n"
        "the test suite fails when this table and the cases differ. Every case runs the real script\n"
        "(Hydra, stage, exit code, log): `missing_file`, `unknown_country` and `zero_horizon` in a separate process as a job\n"
        "would, the others in the test process to save a Python and Spark start each. \"Good world\" cases\n"
        "run after a complete good run and assert that every Delta\n"
        "table version and every model version and alias are unchanged afterwards.\n\n"
        "Exit codes: 1 Hydra (bad override), 2 config, 3 data contract, 4 missing input, 5 source,\n"
        "6 training data, 7 gate rejection, 8 another run of the same country holds the lock.\n\n"
        "| case | input | script | exit | what happens | the message says |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n"
    )


def test_the_reliability_document_matches_the_cases():
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == render_doc(), \
        "docs/reliability.md is stale: run `python -m integration_tests.test_bad_input`"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render_doc(), encoding="utf-8")
