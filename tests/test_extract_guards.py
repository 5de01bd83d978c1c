"""Extract refuses a source that goes back: an earlier last day, or far fewer customers, than the
current transactions (an old or partial export that every per-row contract accepts)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from mlops.errors import DataQualityError
from mlops.runtime import RunContext
from mlops.stages.extract import extract
from tests.conftest import local_config
from tests.test_cleaning import MINIMAL_MAPPING

HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"


def _source(path: Path, customers: range, last_month: int) -> Path:
    """Each customer buys once a month from January 2011 to `last_month`."""
    lines = [HEADER]
    for customer in customers:
        for month in range(1, last_month + 1):
            lines.append(
                f"{customer}{month:02d},85123A,HEART,2,2011-{month:02d}-1{customer % 10} 10:00:00,2.55,{customer},Germany"
            )
    path.write_text("\n".join(lines) + "\n")
    return path


def _context(root: Path, source: Path, spark, *overrides: str) -> RunContext:
    cfg = local_config(root, "use_case/source=csv", f"use_case.source.path={source}", "country=DE", *overrides)
    return RunContext.from_config(cfg, spark=spark)


@pytest.fixture
def world(tmp_path, spark):
    """A current transactions table of 20 customers, January to June 2011."""
    root = tmp_path / "root"
    full = _source(tmp_path / "full.csv", range(12500, 12520), 6)
    ctx = _context(root, full, spark)
    extract(ctx)
    return root, ctx


def test_an_export_that_ends_earlier_is_refused_and_the_table_kept(world, tmp_path, spark):
    root, first = world
    name = first.table_name("transactions")
    older = _source(tmp_path / "older.csv", range(12500, 12520), 4)  # 4 of 6 months: 33% fewer rows
    with pytest.raises(DataQualityError, match="latest transaction is 2011-04-19 10:00, earlier than") as raised:
        extract(_context(root, older, spark))
    assert "2011-06-19 10:00" in raised.value.what and "customers" not in raised.value.what
    assert raised.value.where == str(name) and "use_case.guards.allow_shrink=true" in raised.value.fix
    assert first.tables.version(name) == 0


def test_an_export_that_loses_customers_is_refused_unless_allowed(world, tmp_path, spark, caplog):
    root, first = world
    name = first.table_name("transactions")
    fewer = _source(tmp_path / "fewer.csv", range(12500, 12517), 6)  # 17 of 20: 15% fewer
    with pytest.raises(DataQualityError, match=r"17 customers would replace the 20 .*\(15% fewer") as raised:
        extract(_context(root, fewer, spark))
    assert "max_customer_drop_share=0.1" in raised.value.what and "earlier" not in raised.value.what
    assert first.tables.version(name) == 0
    # within the share, and the same last day: a normal new extract
    extract(_context(root, _source(tmp_path / "most.csv", range(12500, 12519), 6), spark))
    assert first.tables.version(name) == 1
    caplog.set_level(logging.WARNING)
    allowed = extract(_context(root, fewer, spark, "use_case.guards.allow_shrink=true"))
    assert allowed.tables["transactions"] == 2
    assert (
        "17 customers would replace the 19" in caplog.text
        and "allowed by use_case.guards.allow_shrink=true" in caplog.text
    )
    # a later, larger export is what a good day looks like: no warning
    caplog.clear()
    extract(_context(root, _source(tmp_path / "later.csv", range(12500, 12520), 7), spark))
    assert first.tables.version(name) == 2 + 1 and "allow_shrink" not in caplog.text
    assert first.tables.read(name).agg({"invoice_date": "max"}).first()[0] == dt.datetime(2011, 7, 19, 10, 0)


MINIMAL = (
    "use_case.source.columns.customer_id=cust",
    "use_case.source.columns.invoice_date=day",
    "use_case.source.columns.quantity=qty",
    *MINIMAL_MAPPING,
)


def test_repeats_within_a_customers_day_are_kept_where_the_source_cannot_tell_them_apart(tmp_path, spark, caplog):
    """The minimal shape (no invoices, no times): 4 of 11 lines repeat another of the same day."""
    lines = ["cust,day,qty,amount"]
    for customer in (12500, 12501):
        for month in range(1, 4):
            lines.append(f"{customer},20110{month}10,1,2.50")
            if month < 3 or customer == 12500:
                lines.append(f"{customer},20110{month}10,1,2.50")  # the same thing twice that day
    lines.append("12502,20110310,2,7.00")
    source = tmp_path / "minimal.csv"
    source.write_text("\n".join(lines) + "\n")
    caplog.set_level(logging.WARNING)
    kept = extract(_context(tmp_path / "root", source, spark, *MINIMAL))
    assert kept.rows["transactions"] == 12
    assert "5 of 12 lines (42%) repeat another line of the same customer, day, quantity and value" in caplog.text
    assert "daily_duplicates=refuse" in caplog.text
    strict = _context(tmp_path / "strict", source, spark, *MINIMAL, "use_case.guards.daily_duplicates=refuse")
    with pytest.raises(DataQualityError, match="5 of 12 transaction lines are of the same customer, day") as raised:
        extract(strict)
    assert "daily_duplicates=keep" in raised.value.fix
    assert not strict.tables.exists(strict.table_name("transactions"))
