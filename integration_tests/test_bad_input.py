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
import secrets
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from integration_tests.conftest import copy_world, mlflow_state_kept
from tests.test_cleaning import MINIMAL_MAPPING
from tests.timing import timed

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
        frame.loc[frame.index[100 : 100 + rows], column] = value
        return frame

    return change


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, for the document
    script: str
    overrides: tuple[str, ...] = ()
    source: Callable[[pd.DataFrame], pd.DataFrame] | str | None = None  # a change of the base, or a raw kind
    exit_code: int = 3
    says: tuple[str, ...] = ()  # fragments the message must contain (what, where, fix)
    # good: after a full good run | copy: a copy of it, for cases that damage it first (prepare) or
    # may change some tables (may_change) | fresh: nothing yet | root: `root` below, as given
    world: str = "good"
    outcome: str = ""  # what happens, for the document
    process: bool = False  # True: a separate process, as a job runs it; else the same script in-process
    prepare: Callable[[Path], None] | None = None  # damage the copied world before the run
    may_change: tuple[str, ...] = ()  # tables this case may rewrite (what it is about is the rest)
    check: Callable[[Path], None] | None = None  # what the world must hold afterwards (exit 0 cases)
    fault: str | None = None  # a named fault injected at the storage boundary (FAULTS)
    root: str | None = None  # world "root": this storage root instead of a temp one
    never_says: tuple[str, ...] = ()  # fragments the output must not contain (secrets)

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
        encoding, separator = getattr(frame, "attrs", {}).get("encoding", "utf-8"), frame.attrs.get("sep", ",")
        if frame.attrs.get("cut"):  # a file cut off mid-line, as an interrupted copy leaves it
            text = frame.to_csv(index=False, sep=separator)
            path = folder / f"{self.id}.csv"
            path.write_text(text[: len(text) // 2], encoding=encoding)
            return path
        with gzip.open(path, "wt", encoding=encoding) as handle:
            frame.to_csv(handle, index=False, sep=separator)
        return path


def _one_class(frame: pd.DataFrame) -> pd.DataFrame:
    # every customer buys every week for two years: every label is "will repurchase"
    rows = []
    for customer in range(12500, 12530):
        for week in range(105):
            day = pd.Timestamp("2010-01-04") + pd.Timedelta(weeks=week)
            rows.append(
                {
                    "Invoice": f"{customer}{week:03d}",
                    "StockCode": "85123A",
                    "Description": "HEART",
                    "Quantity": "2",
                    "InvoiceDate": f"{day:%Y-%m-%d} 10:00:00",
                    "Price": "2.55",
                    "Customer ID": str(customer),
                    "Country": "Germany",
                }
            )
    return pd.DataFrame(rows, columns=frame.columns)


def _few_customers(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["Customer ID"].isin(frame["Customer ID"].drop_duplicates().head(3))]


def _dated(day: str, rows: int = 2) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A few sales lines (a customer's, of a product) dated `day`."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        sales = frame.index[(frame["Customer ID"] != "") & (frame["StockCode"] != "POST")]
        frame.loc[sales[100 : 100 + rows], "InvoiceDate"] = f"{day} 10:00:00"
        return frame

    return change


def _written_as(**attrs: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The base, written with another encoding / separator, or cut off mid-line."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if attrs.get("encoding"):
            frame.loc[frame.index[100:105], "Description"] = "GLÜHWEIN BECHER"
        if attrs.get("newline"):
            frame.loc[frame.index[100:105], "Description"] = "TWO\nLINES"
        frame.attrs.update(attrs)
        return frame

    return change


def _germany() -> pd.DataFrame:
    """The good world's own German lines, whole."""
    frame = pd.read_csv(BUNDLED, dtype=str, keep_default_na=False)
    return frame[frame["Country"] == "Germany"].reset_index(drop=True)


def _thinned(_: pd.DataFrame) -> pd.DataFrame:
    """Every fourth line, plus each customer's first and the whole last day: the same customers and
    last day, about a third of the rows."""
    frame = _germany()
    keep = (
        (frame.index % 4 == 0)
        | ~frame["Customer ID"].duplicated()
        | (frame["InvoiceDate"] == frame["InvoiceDate"].max())
    )
    return frame[keep]


def _oldest_lines(_: pd.DataFrame) -> pd.DataFrame:
    """The oldest 55% of the lines: an export cut short, 45% fewer rows (inside the shrink guard)."""
    frame = _germany().sort_values("InvoiceDate", kind="stable")
    return frame.head(int(len(frame) * 0.55))


def _customers_lost(_: pd.DataFrame) -> pd.DataFrame:
    """Every line of the same days, but a third of the customers (none of the last day's) gone."""
    frame = _germany()
    last_day = frame["InvoiceDate"].str[:10] == frame["InvoiceDate"].str[:10].max()
    ids = sorted(set(frame["Customer ID"]) - set(frame.loc[last_day, "Customer ID"]) - {""})
    return frame[~frame["Customer ID"].isin(ids[::3])]


LINE_TOTALS = ("use_case.source.columns.price=null", "use_case.source.columns.amount=amount")
# the minimal shape under the sample's own column names (tests/test_cleaning.py)
MINIMAL = tuple(MINIMAL_MAPPING)


def _line_totals(negative: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The base with a line total (`amount`) in place of the unit price; `negative` sales of
    negative value (as an accounting adjustment is booked)."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["amount"] = (frame["Quantity"].astype(int) * frame["Price"].astype(float)).round(2).astype(str)
        sales = frame.index[frame["Quantity"].astype(int) > 0][100 : 100 + negative]
        frame.loc[sales, "amount"] = "-" + frame.loc[sales, "amount"]
        return frame.drop(columns="Price")

    return change


def _daily_repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """The base as the minimal shape (customer, day, quantity, line total): without invoices,
    products and times, 37% of its lines repeat another of the same customer's day."""
    frame = _line_totals()(frame)
    frame = frame.assign(InvoiceDate=frame["InvoiceDate"].str[:10].str.replace("-", ""))
    return frame[frame["Customer ID"] != ""][["Customer ID", "InvoiceDate", "Quantity", "amount"]]


def _every_repeat_kept(root: Path) -> None:
    assert len(_transactions(root)) == len(_daily_repeats(_base()))


def _returns_only(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["Invoice"] = "C" + frame["Invoice"]
    frame["Quantity"] = "-" + frame["Quantity"].str.lstrip("-")
    return frame


def _respelt_country(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[:40], "Country"] = " germany"
    frame.loc[frame.index[40:60], "Country"] = "GERMANY"
    return frame


def _leading_zeros(frame: pd.DataFrame) -> pd.DataFrame:
    # half of each customer's lines carry the id with a leading zero, as a text export may write it
    frame = frame.copy()
    odd = frame.index % 2 == 1
    frame.loc[odd, "Customer ID"] = "0" + frame.loc[odd, "Customer ID"]
    return frame


def _day_first_dates(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"]).dt.strftime("%d/%m/%Y %H:%M")
    return frame


def _transactions(root: Path) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(str(root / "warehouse" / "local" / "clv" / "clv_transactions_de")).to_pandas()


def _kept_every_spelling(root: Path) -> None:
    frame = _transactions(root)
    expected = _base().pipe(lambda f: f[f["Customer ID"] != ""])
    assert set(frame["country"]) == {"Germany"}
    assert frame["customer_id"].nunique() == expected["Customer ID"].nunique()


def _one_customer_per_id(root: Path) -> None:
    frame = _transactions(root)
    expected = _base().pipe(lambda f: f[f["Customer ID"] != ""])["Customer ID"].nunique()
    assert frame["customer_id"].nunique() == expected, "an id with a leading zero became another customer"
    assert not frame["customer_id"].str.startswith("0").any()


def _decoded(root: Path) -> None:
    assert "GLÜHWEIN BECHER" in set(_transactions(root)["description"])


def _parsed_day_first(root: Path) -> None:
    frame = _transactions(root)
    assert frame["invoice_date"].notna().all() and frame["invoice_date"].min().strftime("%Y-%m-%d") == "2009-12-01"


PLANTED_ID = "4711X"


def _planted_id_nowhere(root: Path) -> None:
    """Every file the run wrote (data-quality JSON and pages, MLflow's database and artifacts, logs)."""
    found = [path for path in root.rglob("*") if path.is_file() and PLANTED_ID.encode() in path.read_bytes()]
    assert not found, f"customer id {PLANTED_ID} written to {found}"
    assert list(root.rglob("validations/*.json")), "no data-quality report was written to search"


def _nothing_created(root: Path) -> None:
    assert not root.exists(), f"{sorted(p.name for p in root.rglob('*'))[:5]} created before the config was checked"


def _empty_predictions(root: Path) -> None:
    """The predictions table emptied (as the old batch inference could leave it)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    path = root / "warehouse" / "local" / "clv" / "clv_repurchase_predictions_de"
    schema = pa.schema(DeltaTable(str(path)).schema().to_arrow())
    write_deltalake(str(path), schema.empty_table(), mode="overwrite")


def _returns_only_transactions(root: Path) -> None:
    """The transactions table holding returns only, as an extract of such a source used to leave it."""
    from deltalake import DeltaTable, write_deltalake

    path = root / "warehouse" / "local" / "clv" / "clv_transactions_de"
    table = DeltaTable(str(path)).to_pyarrow_table().to_pandas()
    table["quantity"] = -table["quantity"].abs()
    table["revenue"] = table["quantity"] * table["price"]
    table["is_return"] = True
    write_deltalake(str(path), table, mode="overwrite", schema_mode="overwrite")


def _corrupt_latest_log(table: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        log = root / "warehouse" / "local" / "clv" / table / "_delta_log"
        latest = max(log.glob("*.json"))
        latest.write_text('{"commitInfo": {truncat')

    return damage


def _corrupt_mlflow_db(root: Path) -> None:
    (root / "mlflow" / "mlflow.db").write_bytes(b"not a database" * 512)


@contextlib.contextmanager
def _disk_full() -> Iterator[None]:
    """Every Delta write fails as on a full disk (deltalake reports the OS error in its message):
    the fault a full volume gives, at the boundary where it would first be seen."""
    from mlops import tables

    original = tables.DeltaPathTableStore.overwrite_arrow

    def full(self, name, data):
        raise OSError(
            f"Generic LocalFileSystem error: Unable to copy data to file: No space left on device "
            f"(os error 28) under {self.path(name)}"
        )

    tables.DeltaPathTableStore.overwrite_arrow = full
    try:
        yield
    finally:
        tables.DeltaPathTableStore.overwrite_arrow = original


FAULTS = {"disk_full": _disk_full}
# planted in config by a case; built at run time so that the repository holds no credential shape
PLANTED_PASSWORD, PLANTED_TOKEN = secrets.token_hex(8), secrets.token_hex(8)
UNWRITABLE_ROOT = "/sys/ac-mlops-storage"  # sysfs: no user, root included, may create a folder there


CASES: list[Case] = [
    Case(
        "missing_column",
        "source without the Quantity column",
        "extract.py",
        source=lambda f: f.drop(columns="Quantity"),
        says=("expect_table_columns_to_match_set", "Quantity", "use_case.source.columns"),
        outcome="source contract fails before anything is written",
    ),
    Case(
        "renamed_column",
        "Quantity renamed to Qty",
        "extract.py",
        source=lambda f: f.rename(columns={"Quantity": "Qty"}),
        says=("Quantity", "map the source's column names"),
        outcome="source contract fails",
    ),
    Case(
        "text_quantity",
        "text in Quantity",
        "extract.py",
        source=_with("Quantity", "three"),
        says=("quantity must be a whole number",),
        outcome="source contract fails, with the failing count",
    ),
    Case(
        "unparseable_dates",
        "InvoiceDate not a timestamp",
        "extract.py",
        source=_with("InvoiceDate", "31/12/2010 25:61"),
        says=("invoice dates must match use_case.source.timestamp_format (ISO", "InvoiceDate"),
        outcome="source contract fails",
    ),
    Case(
        "no_customer_ids",
        "every Customer ID empty",
        "extract.py",
        source=lambda f: f.assign(**{"Customer ID": ""}),
        says=("no transactions left for country Germany",),
        outcome="transactions contract fails (no rows)",
    ),
    Case(
        "malformed_ids",
        f"5 lines of customer `{PLANTED_ID}` (not a number)",
        "extract.py",
        source=_with("Customer ID", PLANTED_ID),
        world="fresh",
        says=("customer ids must be whole numbers", "unexpected_count=5", "id#"),
        never_says=(PLANTED_ID,),
        check=_planted_id_nowhere,
        outcome="source contract fails; the id shown as a salted pseudonym, in the message, reports and MLflow",
    ),
    Case(
        "negative_prices",
        "negative prices",
        "extract.py",
        source=_with("Price", "-2.55"),
        says=("is an accounting adjustment", "negative_value=return"),
        outcome="transactions contract fails",
    ),
    Case(
        "zero_quantities",
        "zero quantities",
        "extract.py",
        source=_with("Quantity", "0"),
        says=("zero quantity is not a sale or a return",),
        outcome="transactions contract fails",
    ),
    Case(
        "future_dates",
        "sales dated in 2099",
        "extract.py",
        source=_with("InvoiceDate", "2099-01-01 10:00:00"),
        says=("dated after this run started", "invoices", "timezone"),
        outcome="guard fails, naming 3 invoices",
    ),
    Case(
        "negative_amount",
        "line totals, 5 sales of negative value",
        "extract.py",
        LINE_TOTALS,
        source=_line_totals(negative=5),
        says=("is an accounting adjustment", "negative_value=return"),
        outcome="transactions contract fails, as for a negative price",
    ),
    Case(
        "daily_repeats",
        "no invoices or times: 37% of lines repeat within a customer's day",
        "extract.py",
        MINIMAL,
        source=_daily_repeats,
        world="fresh",
        exit_code=0,
        says=("repeat another line of the same customer, day, quantity and value", "daily_duplicates=refuse"),
        check=_every_repeat_kept,
        outcome="kept as purchases, with a warning that counts them",
    ),
    Case(
        "daily_repeats_refused",
        "the same, use_case.guards.daily_duplicates=refuse",
        "extract.py",
        (*MINIMAL, "use_case.guards.daily_duplicates=refuse"),
        source=_daily_repeats,
        world="fresh",
        says=("of the same customer, day, quantity and value", "loaded twice", "daily_duplicates=keep"),
        outcome="guard fails; nothing written",
    ),
    Case(
        "duplicated_source",
        "the same extract twice",
        "extract.py",
        source=lambda f: pd.concat([f, f]),
        says=("exact duplicates", "loaded twice", "max_duplicate_share"),
        outcome="guard fails",
    ),
    Case(
        "pooled_country_absent",
        "pooled, a country the source lacks",
        "extract.py",
        ("country.training_population=pooled", "country.source_value=Atlantis"),
        says=("no transactions of 'Atlantis'", "country.source_value"),
        outcome="guard fails; every country kept, none of them the home country",
    ),
    Case(
        "empty_source",
        "header only",
        "extract.py",
        source="empty",
        says=("the source is empty",),
        outcome="source contract fails",
    ),
    Case(
        "missing_file",
        "source path does not exist",
        "extract.py",
        source="missing",
        exit_code=5,
        says=("does not exist", "use_case.source.path"),
        outcome="source error before Spark reads",
        process=True,
    ),
    Case(
        "corrupt_gzip",
        "truncated .csv.gz",
        "extract.py",
        source="corrupt_gzip",
        exit_code=5,
        says=("cannot read csv source", "not a complete gzip file", "cut off or damaged"),
        outcome="source error; before the fix Spark read it quietly as an empty source",
    ),
    Case(
        "unknown_country",
        "country=XX",
        "extract.py",
        ("country=XX",),
        exit_code=1,
        says=("Could not find 'country/XX'", "Available options"),
        outcome="Hydra refuses the override",
        process=True,
    ),  # Hydra re-raises instead of exiting when a tracer (coverage) is active
    Case(
        "zero_horizon",
        "model.horizon_days=0",
        "train.py",
        ("model.horizon_days=0",),
        exit_code=2,
        says=("model.horizon_days=0 is outside", "horizon"),
        outcome="config check, before Spark starts",
        process=True,
    ),
    Case(
        "sample_fraction_zero",
        "env.sample_fraction=0",
        "split.py",
        ("env.sample_fraction=0",),
        exit_code=2,
        says=("env.sample_fraction=0", "(0, 1]"),
        outcome="config check",
    ),
    Case(
        "sample_fraction_above_one",
        "env.sample_fraction=1.5",
        "split.py",
        ("env.sample_fraction=1.5",),
        exit_code=2,
        says=("env.sample_fraction=1.5",),
        outcome="config check",
    ),
    Case("negative_seed", "seed=-1", "train.py", ("seed=-1",), exit_code=2, says=("seed=-1",), outcome="config check"),
    Case(
        "threshold_above_one",
        "gate ROC-AUC minimum 1.5",
        "evaluate.py",
        ("model.gate.thresholds.roc_auc.min=1.5",),
        exit_code=2,
        says=("model.gate.thresholds.roc_auc.min=1.5 is outside [0, 1]",),
        outcome="config check",
    ),
    Case(
        "gate_rule_unmeasured",
        "gate rule on a metric the model is not measured on",
        "evaluate.py",
        ("model.gate.versus_baseline.metric=qwk",),
        exit_code=2,
        says=("model.gate.versus_baseline.metric=qwk is not one of model.metrics",),
        outcome="config check",
    ),
    Case(
        "inference_threshold",
        "inference threshold 2",
        "batch_inference.py",
        ("model.inference.threshold=2",),
        exit_code=2,
        says=("model.inference.threshold=2",),
        outcome="config check",
    ),
    Case(
        "sql_in_table_name",
        "a table name with SQL",
        "extract.py",
        ("use_case.tables.transactions='t; DROP TABLE x'",),
        exit_code=2,
        says=("invalid table name", "letters, digits and underscores"),
        outcome="refused before any SQL",
    ),
    Case(
        "sql_in_model_name",
        "a model name with SQL",
        "evaluate.py",
        ("use_case.registered_model='local.clv.x; DROP TABLE y --clv_repurchase_de'",),
        exit_code=2,
        says=("invalid table name",),
        outcome="refused before the registry is asked",
    ),
    Case(
        "one_class_labels",
        "every customer repurchases",
        "run_pipeline.py",
        ("pipeline.stages=[extract,features,split,train]", "env.sample_fraction=1.0"),
        source=_one_class,
        exit_code=6,
        says=("only label value(s) [1]", "use more data"),
        world="fresh",
        outcome="training refuses one class",
    ),
    Case(
        "too_few_customers",
        "three customers",
        "run_pipeline.py",
        ("pipeline.stages=[extract,features,split,train,evaluate]",),
        source=_few_customers,
        exit_code=3,
        says=("no labelled rows",),
        world="fresh",
        outcome="split contract fails: no test rows",
    ),
    Case(
        "no_champion",
        "scoring a model that was never promoted",
        "batch_inference.py",
        ("model=ltv_bucket",),
        exit_code=4,
        says=("has no champion", "python scripts/evaluate.py model=ltv_bucket country=DE", "evaluate_if_no_champion"),
        outcome="missing input in every env: scoring never promotes; names the command to run",
    ),
    Case(
        "scoring_before_data",
        "inference.date=2000-01-31",
        "batch_inference.py",
        ("inference.date=2000-01-31",),
        exit_code=2,
        says=("come before the first transaction",),
        outcome="config error, nothing scored",
    ),
    # -- implausible values (plausibility guards, use_case.guards) --
    Case(
        "ancient_dates",
        "two lines dated 1990",
        "extract.py",
        source=_dated("1990-06-01"),
        says=("dated before", "max_history_years=10", "earliest_date"),
        outcome="guard fails: the snapshots would stretch back to 1990",
    ),
    Case(
        "leading_gap",
        "two lines a year before the rest",
        "run_pipeline.py",
        ("pipeline.stages=[extract,features]",),
        source=_dated("2008-12-01"),
        world="fresh",
        says=("lies 365 days before the bulk of the data", "max_leading_gap_days", "use_case.snapshots.start_date"),
        outcome="features guard fails before any feature is written",
    ),
    Case(
        "early_first_snapshot",
        "snapshots configured from 2005",
        "features.py",
        ("use_case.snapshots.start_date=2005-01-31",),
        says=("lies", "days before the bulk of the data"),
        outcome="features guard fails; features and labels kept",
    ),
    Case(
        "scoring_after_data",
        "inference.date years after the data",
        "batch_inference.py",
        ("inference.date=2015-01-31",),
        says=("after the last transaction", "max_days_after_data"),
        outcome="guard fails; predictions kept",
    ),
    Case(
        "infinite_price",
        "a price of 1e999 (infinite)",
        "extract.py",
        source=_with("Price", "1e999"),
        says=("max_price", "partial_unexpected_list=[inf"),
        outcome="transactions contract fails",
    ),
    Case(
        "huge_quantity",
        "a quantity of 10 million",
        "extract.py",
        source=_with("Quantity", "10000000"),
        says=("max_abs_quantity",),
        outcome="transactions contract fails",
    ),
    # -- empty or collapsed outputs --
    Case(
        "shrunk_source",
        "a thinned extract (a third of the rows; every customer, the same last day)",
        "extract.py",
        source=_thinned,
        says=("fewer", "max_shrink_share", "allow_shrink=true"),
        outcome="shrink guard: transactions kept",
    ),
    Case(
        "partial_source",
        "the oldest 55% of the lines (45% fewer rows)",
        "extract.py",
        source=_oldest_lines,
        says=("earlier than the current table's", "customers would replace", "allow_shrink=true"),
        outcome="history guard: transactions kept",
    ),
    Case(
        "customers_lost",
        "a third of the customers gone, the same days",
        "extract.py",
        source=_customers_lost,
        says=("customers would replace", "max_customer_drop_share=0.1", "allow_shrink=true"),
        outcome="customer guard: transactions kept",
    ),
    Case(
        "returns_only",
        "every line a return (shrink allowed)",
        "run_pipeline.py",
        ("pipeline.stages=[extract,features]", "use_case.guards.allow_shrink=true"),
        source=_returns_only,
        world="copy",
        may_change=("clv_transactions_de",),
        says=(
            "allowed by use_case.guards.allow_shrink=true",
            "expect_table_row_count_to_be_between",
            "no customer has a purchase",
        ),
        outcome="features contract fails (0 rows); features and labels kept",
    ),
    Case(
        "empty_population",
        "transactions of returns only",
        "batch_inference.py",
        prepare=_returns_only_transactions,
        world="copy",
        says=("no customers to score",),
        outcome="refused; the date's predictions kept",
    ),
    Case(
        "monitor_empty_predictions",
        "an emptied predictions table",
        "monitor.py",
        prepare=_empty_predictions,
        world="copy",
        says=("no predictions to monitor",),
        outcome="refused; the monitoring table kept",
    ),
    # -- values kept as meant --
    Case(
        "country_spelling",
        "60 lines with `germany` / `GERMANY`",
        "extract.py",
        source=_respelt_country,
        world="fresh",
        exit_code=0,
        says=("60 source rows spell country 'Germany' differently",),
        check=_kept_every_spelling,
        outcome="kept as Germany, with a warning that counts them",
    ),
    Case(
        "leading_zero_ids",
        "half the ids written `012345`",
        "extract.py",
        source=_leading_zeros,
        world="fresh",
        exit_code=0,
        check=_one_customer_per_id,
        outcome="one customer per id: leading zeros normalised",
    ),
    Case(
        "latin1_source",
        "a Latin-1 file read as UTF-8",
        "extract.py",
        source=_written_as(encoding="latin-1"),
        says=("not valid UTF-8", "use_case.source.encoding"),
        outcome="source contract fails (U+FFFD in text)",
    ),
    Case(
        "latin1_declared",
        "the same file, encoding=ISO-8859-1",
        "extract.py",
        ("use_case.source.encoding=ISO-8859-1",),
        source=_written_as(encoding="latin-1"),
        world="fresh",
        exit_code=0,
        check=_decoded,
        outcome="read correctly",
    ),
    # -- contracts that tell the truth --
    Case(
        "semicolon_delimiter",
        "a `;`-separated file",
        "extract.py",
        source=_written_as(sep=";"),
        says=("Spark failed while checking", "MALFORMED_CSV_RECORD", "delimiter"),
        outcome='Spark\'s error and the likely cause, not "all expectations failed"',
    ),
    Case(
        "quoted_newline",
        "line breaks inside quoted fields",
        "extract.py",
        source=_written_as(newline=True),
        says=("MALFORMED_CSV_RECORD", "line break inside"),
        outcome="Spark's error and the likely cause",
    ),
    Case(
        "cut_mid_line",
        "a plain CSV cut off mid-line",
        "extract.py",
        source=_written_as(cut=True),
        says=("MALFORMED_CSV_RECORD", "cut off mid-line"),
        outcome="Spark's error and the likely cause",
    ),
    Case(
        "timestamp_format",
        "dates written dd/MM/yyyy HH:mm, format set",
        "extract.py",
        ("use_case.source.timestamp_format='dd/MM/yyyy HH:mm'",),
        source=_day_first_dates,
        world="fresh",
        exit_code=0,
        check=_parsed_day_first,
        outcome="the contract follows the format; dates parsed",
    ),
    Case(
        "timestamp_format_mismatch",
        "ISO dates, format dd/MM/yyyy HH:mm",
        "extract.py",
        ("use_case.source.timestamp_format='dd/MM/yyyy HH:mm'",),
        says=("must match use_case.source.timestamp_format (dd/MM/yyyy HH:mm)",),
        outcome="source contract fails",
    ),
    Case(
        "missing_description",
        "source without Description",
        "extract.py",
        source=lambda f: f.drop(columns="Description"),
        says=("Description", "use_case.source.columns"),
        outcome="source contract fails (every column read is in it)",
    ),
    Case(
        "backtick_column",
        "a source column named with a backtick",
        "extract.py",
        ("use_case.source.columns.quantity='Qu`antity'",),
        source=lambda f: f.rename(columns={"Quantity": "Qu`antity"}),
        says=("INVALID_ATTRIBUTE_NAME_SYNTAX", "rename the column"),
        outcome="source contract reports it",
    ),
    # -- storage faults and config that used to end in a traceback --
    Case(
        "unwritable_root",
        "storage root that cannot be written",
        "extract.py",
        world="root",
        root=UNWRITABLE_ROOT,
        exit_code=9,
        says=("the storage may not be written", "env.storage_root"),
        outcome="storage error before Spark starts",
    ),
    Case(
        "disk_full",
        "every Delta write fails: disk full",
        "extract.py",
        fault="disk_full",
        exit_code=9,
        says=(
            "the disk is full",
            "No space left on device",
            "writing table local.clv.clv_transactions_de",
            "warehouse/local/clv/clv_transactions_de",
            "previous table versions are intact",
        ),
        outcome="storage error naming the table and its folder; every table kept (fault injected at the deltalake boundary)",
    ),
    Case(
        "corrupt_delta_log",
        "the features table's last log entry damaged",
        "split.py",
        prepare=_corrupt_latest_log("clv_repurchase_features_de"),
        world="copy",
        exit_code=9,
        says=("Delta log of table local.clv.clv_repurchase_features_de cannot be read", "_delta_log", "backup"),
        outcome="storage error naming the table and its log",
    ),
    Case(
        "corrupt_mlflow_db",
        "mlflow.db overwritten with garbage",
        "evaluate.py",
        prepare=_corrupt_mlflow_db,
        world="copy",
        exit_code=9,
        says=("MLflow tracking store cannot be read", "mlflow.db"),
        outcome="storage error naming the database",
    ),
    Case(
        "fractional_horizon",
        "model.horizon_days=90.5",
        "train.py",
        ("model.horizon_days=90.5",),
        exit_code=1,
        says=("Value '90.5' of type 'float' could not be converted to Integer", "full_key: model.horizon_days"),
        outcome="the schema refuses it at composition",
        # Hydra exits 1 from a composition error, but re-raises it under a tracer such as coverage's
        process=True,
    ),
    # -- the newer parts, held to the same rules (issue 32) --
    Case(
        "sample_into_pipeline_table",
        "load_sample pointed at extract's own output table",
        "load_sample.py",
        ("use_case/source=table", "use_case.source.table=local.clv.clv_transactions_de"),
        exit_code=2,
        says=("local.clv.clv_transactions_de is a table the pipeline itself writes", "var.source_table"),
        outcome="refused before anything is read; transactions kept",
    ),
    Case(
        "challenger_on_champion",
        "promote.alias=challenger on the champion's version",
        "promote.py",
        ("promote.version=1", "promote.alias=challenger"),
        exit_code=2,
        says=("version 1 is the champion", "promote.alias=champion"),
        outcome="refused; both aliases where they were",
    ),
    Case(
        "evaluate_unchecked",
        "scoring may evaluate first, with the gate disabled",
        "batch_inference.py",
        ("inference.evaluate_if_no_champion=true", "evaluation.run_mode=disabled"),
        world="fresh",
        exit_code=2,
        says=("evaluation.run_mode=disabled does not let the gate decide", "evaluation.run_mode=enabled"),
        outcome="refused before any stage runs; no model registered",
    ),
    Case(
        "backfill_cadence_zero",
        "inference.backfill.cadence_months=0",
        "batch_inference.py",
        ("inference.backfill.start=2011-01-31", "inference.backfill.cadence_months=0"),
        exit_code=2,
        says=("inference.backfill.cadence_months=0 is outside",),
        outcome="config check",
    ),
    Case(
        "backfill_start_after_end",
        "backfill start after end",
        "batch_inference.py",
        ("inference.backfill.start=2011-06-30", "inference.backfill.end=2010-06-30"),
        exit_code=2,
        says=("inference.backfill.start=2011-06-30 is after inference.backfill.end=2010-06-30",),
        outcome="config error, nothing scored",
    ),
    # -- secrets in config --
    Case(
        "secret_in_config",
        "a Spark Connect URL with user:password and ;token=, plus a bad value",
        "train.py",
        (
            "env/spark=connect",
            f"env.spark.remote='sc://clv:{PLANTED_PASSWORD}@127.0.0.1:1/;token={PLANTED_TOKEN}'",
            "model.horizon_days=0",
            "hydra.verbose=true",
        ),
        exit_code=2,
        says=("model.horizon_days=0 is outside", "sc://***@127.0.0.1:1/;token=***"),
        never_says=(PLANTED_PASSWORD, PLANTED_TOKEN),
        process=True,
        outcome="config check; Hydra's debug dump of the config shows the credentials as ***",
    ),
    Case(
        "unreachable_connect",
        "a Spark Connect address where nothing listens (timeout 3 s)",
        "extract.py",
        (
            "env/spark=connect",
            f"env.spark.remote='sc://127.0.0.1:1/;token={PLANTED_TOKEN}'",
            "env.spark.connect_timeout_seconds=3",
        ),
        exit_code=13,
        says=("no Spark Connect server answered at sc://127.0.0.1:1/;token=***", "env.spark.connect_timeout_seconds=3"),
        never_says=(PLANTED_TOKEN, "RpcError"),
        process=True,
        outcome="gives up after the timeout, one line; the process exits",
    ),
    # -- names and paths, before anything touches the disk --
    Case(
        "experiment_dotdot",
        "experiment name with `..`",
        "evaluate.py",
        ("use_case.experiment='../../escape/clv_repurchase_de'",),
        world="fresh",
        exit_code=2,
        says=("is not a safe experiment name",),
        check=_nothing_created,
        outcome="refused; no folder created",
    ),
    Case(
        "suffix_with_path",
        "country suffix `../de`",
        "extract.py",
        ("country.suffix='../de'",),
        world="fresh",
        exit_code=2,
        says=("country.suffix='../de' is not a plain name",),
        check=_nothing_created,
        outcome="refused before the lock file is made",
    ),
]


# -- running ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    stderr: str
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    check_error: str | None = None


def world_state(root: Path) -> dict:
    """Every Delta table's version and row count, and every registered model's versions and aliases,
    under root; what cannot be read is recorded as such (a case may have damaged it on purpose)."""
    from deltalake import DeltaTable

    state: dict = {"tables": {}, "models": {}}
    warehouse = root / "warehouse"
    if warehouse.exists():
        for path in sorted(p for p in warehouse.glob("*/*/*") if (p / "_delta_log").exists()):
            try:
                table = DeltaTable(str(path))
                rows = sum(table.get_add_actions(flatten=True).column("num_records").to_pylist())
                state["tables"][path.name] = (table.version(), rows)
            except Exception as error:
                state["tables"][path.name] = f"unreadable: {type(error).__name__}"
    database = root / "mlflow" / "mlflow.db"
    if database.exists():
        import sqlite3

        try:
            with sqlite3.connect(database) as connection:
                state["models"] = {
                    "versions": sorted(connection.execute("SELECT name, version FROM model_versions").fetchall()),
                    "aliases": sorted(
                        connection.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
                    ),
                }
        except sqlite3.DatabaseError as error:
            state["models"] = f"unreadable: {error}"
    return state


def run_script(script: str, overrides: list[str], cwd: Path, process: bool) -> tuple[int, str]:
    """(exit code, stderr) of `python scripts/<script> <overrides>`.

    In a separate process when `process`; otherwise the same script's `__main__` in this process
    (Hydra, the stage, the exit code and the log all as in a job, minus a Python and Spark start
    per case), with stderr captured from where Hydra's logging writes.
    """
    path = REPO / "scripts" / script
    if process:
        with timed("a script in a process of its own"):
            result = subprocess.run(
                [sys.executable, str(path), *overrides],
                cwd=cwd,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                capture_output=True,
                text=True,
                timeout=900,
            )
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


def case_root(case: Case, good_root: Path, folder: Path) -> Path:
    """The storage root a case runs against (a copy of the good world for cases that change it)."""
    if case.world == "good":
        return good_root
    if case.world == "copy":
        root = copy_world(good_root, folder / "root")
        if case.prepare:
            case.prepare(root)
        return root
    if case.world == "root":
        return Path(str(case.root))
    return folder / "root"


def run_case(case: Case, root: Path, folder: Path) -> Outcome:
    overrides = [f"env.storage_root={root}", "country=DE", *case.overrides]
    source = case.source_path(folder)
    if source is not None:
        overrides += ["use_case/source=csv", f"use_case.source.path={source}"]
    before = world_state(root)
    with FAULTS[case.fault]() if case.fault else contextlib.nullcontext():
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
    with mlflow_state_kept():  # copy cases point MLflow at private, even damaged, stores
        for case in CASES:
            results[case.id] = _run_one(case, good_root, tmp_path_factory)
    logging.getLogger().handlers.clear()  # the scripts pointed the log at their captured stderr
    return results


def _run_one(case: Case, good_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """One case in its own folder and world; a failing `check` is reported by the case's own test."""
    folder = tmp_path_factory.mktemp(case.id)
    root = case_root(case, good_root, folder)
    outcome = run_case(case, root, folder)
    if case.check:
        try:
            case.check(root)
        except Exception as error:
            outcome.check_error = "".join(traceback.format_exception(error))
    return outcome


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_fails_clearly_and_loses_nothing(case, outcomes):
    outcome = outcomes[case.id]
    assert outcome.returncode == case.exit_code, f"exit {outcome.returncode}:\n{outcome.stderr[-4000:]}"
    for fragment in case.says:
        assert fragment in outcome.stderr, f"{fragment!r} not in:\n{outcome.stderr[-4000:]}"
    for fragment in case.never_says:
        assert fragment not in outcome.stderr, f"{case.id}: a secret reached the output"
    assert outcome.check_error is None, outcome.check_error
    if case.exit_code not in (0, 1):  # our own errors: one line with what, where and fix; no traceback
        assert "Traceback" not in outcome.stderr
        assert " | where: " in outcome.stderr and " | fix: " in outcome.stderr
    if case.world in ("good", "copy"):
        changed = {
            name
            for name in {*outcome.before["tables"], *outcome.after["tables"]}
            if outcome.before["tables"].get(name) != outcome.after["tables"].get(name)
        }
        assert changed <= set(case.may_change), f"a failed run changed {sorted(changed - set(case.may_change))}"
        assert outcome.after["models"] == outcome.before["models"], "a failed run changed a model or an alias"
    elif outcome.after["models"]:
        assert outcome.after["models"].get("versions", []) == [], "a model was registered from bad data"


def test_error_messages_do_not_dump_customer_rows(outcomes):
    """Counts and a few keys, never whole rows: no customer id next to its prices and dates."""
    for case_id, outcome in outcomes.items():
        lines = [line for line in outcome.stderr.splitlines() if "Germany" in line and "85123A" in line]
        assert not lines, f"{case_id} printed source rows: {lines[:2]}"


# -- the document -------------------------------------------------------------------------------------

# the kill and concurrency faults, run by integration_tests/test_faults.py: test -> (fault, what the next run finds)
FAULT_TESTS = {
    "test_kill_9_in_the_middle_of_an_overwrite_leaves_the_previous_version": (
        "kill -9 during extract's Delta overwrite",
        "the previous version, unchanged; the re-run commits",
    ),
    "test_kill_9_between_the_features_and_labels_writes_is_undone_by_the_next_run": (
        "kill -9 after features is committed, before labels",
        "the next run (extract) restores features to its version before the unit, once, with a warning",
    ),
    "test_kill_9_then_another_writer_the_next_run_keeps_that_version_and_exits_11": (
        "kill -9 of features once begun, after the features commit, or after the labels commit; then "
        "another writer's version of one of its tables",
        "exit 11 naming every version; the other writer's version kept, nothing restored, until a person "
        "closes the record",
    ),
    "test_kill_9_between_the_scoring_features_and_predictions_writes_is_undone": (
        "kill -9 after scoring_features is recorded, before predictions",
        "the next run restores scoring_features; predictions never moved",
    ),
    "test_kill_9_while_evaluate_logs_leaves_a_run_that_the_next_evaluate_marks_failed": (
        "kill -9 while evaluate logs to MLflow",
        "the next evaluate marks the orphaned run FAILED; aliases unchanged",
    ),
    "test_two_runs_of_the_same_stages_take_turns_and_never_interleave": (
        "two runs of features at once",
        "one waits for the lock; their versions never interleave",
    ),
    "test_two_different_stages_of_one_model_and_country_take_turns_too": (
        "extract and features of DE at once",
        "one waits for the lock (one per use case and country); neither writes between the other's read and writes",
    ),
    "test_a_run_that_cannot_get_the_lock_in_time_exits_8_without_starting": (
        "the lock held past env.lock_timeout_seconds",
        "exit 8, nothing written",
    ),
    "test_remote::test_a_kill_between_features_and_labels_on_a_catalog_world_is_undone_by_its_own_job_run": (
        "catalog world: kill -9 of job run 501's features after features, before labels",
        "a reader of another job run while 501's lease runs: exit 8, nothing touched; the retry in job run "
        "501 restores features and writes both whole",
    ),
    "test_remote::test_a_kill_between_scoring_features_and_predictions_is_undone_once_the_lease_runs_out": (
        "catalog world: kill -9 of batch inference between scoring_features and predictions",
        "once the unit's lease has run out, another job's monitor restores scoring_features, then reads "
        "a consistent pair",
    ),
    "test_remote::test_two_jobs_appending_to_the_journal_at_once_lose_no_record": (
        "catalog world: two jobs record their write units at the same moment",
        "every record of both, none refused: journal appends never conflict (Delta's blind appends)",
    ),
}


def render_doc() -> str:
    rows = "\n".join(
        f"| `{case.id}` | {case.input} | `{case.script}` | {case.exit_code} | {case.outcome} | "
        f"{'; '.join(f'`{s}`' for s in case.says)} |"
        for case in CASES
    )
    separate = ", ".join(f"`{case.id}`" for case in CASES if case.process)
    return (
        "# Reliability: what bad input does\n\n"
        "Generated from `integration_tests/test_bad_input.py` (`python -m integration_tests.test_bad_input`);\n"
        f"the test suite fails when this table and the cases differ. {len(CASES)} cases; every one runs the real\n"
        f"script (Hydra, stage, exit code, log): {separate} in a separate process as a job\n"
        "would, the others in the test process to save a Python and Spark start each.\n\n"
        "Each case records every Delta table's version and row count and every registered model version\n"
        'and alias before and after the run. "Good world" cases run against a complete good run and\n'
        'must leave all of it unchanged; "copy" cases run against a copy of it, first damaged where the\n'
        "case says (an emptied predictions table, a corrupt Delta log or MLflow database), and may change\n"
        'only the tables they name; "fresh" cases start from nothing and may register no model. Cases\n'
        "with exit 0 check what the run wrote instead (one customer per id, every spelling of the\n"
        "country kept, text decoded). `disk_full` injects the error a full disk gives at the deltalake\n"
        "write; every other fault is real. Secrets planted in config must not reach the output.\n\n"
        "## Kills and concurrent runs\n\n"
        "Run by `integration_tests/test_faults.py` (local worlds) and `integration_tests/test_remote.py`\n"
        "(a catalog world on a Spark Connect server) with real processes and kill -9. A stage that writes\n"
        "several tables records the unit first (table versions before, each version written) and clears it\n"
        "last. Locally the record is a file in `<storage_root>/journal/`, and the next run of any stage of\n"
        "that use case and country restores an unfinished unit's tables, under the run lock. A catalog\n"
        "world (Unity Catalog) keeps the records in an append-only table of its own schema\n"
        "(`use_case.journal_table`), which every job of the target sees; each unit names its job run\n"
        "(`lineage.job_run_id`) and holds a lease (`journal.lease_minutes`, renewed by every record). A\n"
        "run undoes only units on the tables it reads or writes, and only dead ones: its own job run's, or\n"
        "one whose lease has run out; a live one on those tables stops it with exit 8 and is left alone.\n"
        "A pair's training and scoring jobs may run at once; their extracts take turns in the extract\n"
        "job's queue (`integration_tests/test_rehearsal.py`). What stays open: a unit on Databricks whose\n"
        "owner was killed is undone by its own job run's retry at once, by any other run only after the\n"
        "lease (90 minutes), and runs of other jobs that need its tables exit 8 until then.\n\n"
        "| fault | what the next run finds | test |\n|---|---|---|\n"
        + "".join(
            f"| {fault} | {finds} | `{test.rpartition('::')[2]}` |\n" for test, (fault, finds) in FAULT_TESTS.items()
        )
        + "\n## Bad input\n\n"
        "Exit codes: 0 done, 1 Hydra (bad override), 2 config, 3 data contract or plausibility guard,\n"
        "4 missing input, 5 source, 6 training data, 7 gate rejection, 8 another run of the same country\n"
        "holds the lock (on a catalog world: a live write of another job run), 9 storage (full, not writable, a damaged Delta log or MLflow database), 11 a killed\n"
        "run's half-written unit cannot be undone because a table was written since, 12 the machine lacks\n"
        "Java 17+ for local Spark (tests/test_first_hour.py).\n\n"
        "| case | input | script | exit | what happens | the message says |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n"
    )


def test_every_fault_the_document_names_is_a_test():
    import importlib

    for name in FAULT_TESTS:
        module, _, test = name.rpartition("::")
        found = importlib.import_module(f"integration_tests.{module or 'test_faults'}")
        assert callable(getattr(found, test, None)), name


def test_the_reliability_document_matches_the_cases():
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == render_doc(), (
        "docs/reliability.md is stale: run `python -m integration_tests.test_bad_input`"
    )


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render_doc(), encoding="utf-8")
