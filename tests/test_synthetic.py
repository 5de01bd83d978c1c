"""The synthetic generator: deterministic, readable as a source, and true to the BG/NBD story it claims."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clv.baselines import BGNBDParams, calibration_summary, fit_bgnbd
from clv.cleaning import clean_transactions
from clv.features import compute_features_repurchase_fn
from clv.synthetic import (
    BLOCK_CUSTOMERS,
    SOURCE_COLUMNS,
    SyntheticSpec,
    customers_for_lines,
    generate_block,
    write_source,
)
from mlops.sources import CsvSource
from tests.bgnbd_simulators import bgnbd_log_likelihood
from tests.test_baselines import Z, _observed_information_se

SMALL = SyntheticSpec(n_customers=300, seed=7)


def test_the_same_seed_gives_the_same_lines_and_another_seed_does_not():
    first, again, other = (generate_block(spec, 0) for spec in (SMALL, SMALL, SyntheticSpec(n_customers=300, seed=8)))
    assert list(first) == list(SOURCE_COLUMNS)
    for name in SOURCE_COLUMNS:
        np.testing.assert_array_equal(first[name], again[name])
    assert first["Invoice"].size != other["Invoice"].size or not np.array_equal(first["Price"], other["Price"])


def test_a_block_does_not_depend_on_how_many_customers_follow_it():
    """Blocks are seeded by (seed, block), so 10k customers are the first 10k of 1M."""
    few = generate_block(SyntheticSpec(n_customers=BLOCK_CUSTOMERS, seed=3), 0)
    many = generate_block(SyntheticSpec(n_customers=5 * BLOCK_CUSTOMERS, seed=3), 0)
    np.testing.assert_array_equal(few["Invoice"], many["Invoice"])


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_customers=0),
        dict(acquisition_share=0.0),
        dict(cancel_share=1.0),
        dict(countries=("Germany",), country_weights=(0.5, 0.5)),
        dict(start=dt.date(2011, 1, 1), end=dt.date(2010, 1, 1)),
    ],
)
def test_a_bad_spec_is_refused_with_the_reason(bad):
    with pytest.raises(ValueError, match="must"):
        SyntheticSpec(**{"n_customers": 10, **bad})


def test_lines_carry_the_real_sources_conventions():
    lines = pd.DataFrame(generate_block(SMALL, 0))
    returns = lines[lines["Invoice"].str.startswith("C")]
    sales = lines[~lines["Invoice"].str.startswith("C")]
    assert len(returns) > 0 and (returns["Quantity"] < 0).all() and (sales["Quantity"] > 0).all()
    assert (lines["Price"] > 0).all()
    # every cancellation refers to a sale of the same customer, and comes after it
    sale_of = sales.groupby("Invoice").agg(day=("InvoiceDate", "min"), customer=("Customer ID", "first"))
    refers = returns.assign(sale=returns["Invoice"].str[1:]).join(sale_of, on="sale")
    assert refers["day"].notna().all() and (refers["InvoiceDate"] >= refers["day"]).all()
    assert (refers["Customer ID"] == refers["customer"]).all()
    anonymous = (lines["Customer ID"] < 0).mean()
    assert 0.03 < anonymous < 0.2  # ~10% of invoices, in lines
    dates = lines["InvoiceDate"]
    assert dates.min() >= np.datetime64(SMALL.start) and dates.max() < np.datetime64(SMALL.end)
    assert set(lines["Country"]) == set(SMALL.countries)


def test_written_parts_read_as_a_source_and_clean_like_the_real_data(spark, tmp_path):
    spec = SyntheticSpec(
        n_customers=BLOCK_CUSTOMERS + 50, seed=1, countries=("Germany", "France"), country_weights=(0.5, 0.5)
    )
    written = write_source(spec, tmp_path / "source")
    paths = written.paths
    assert [p.name for p in paths] == ["part-00000.csv.gz", "part-00001.csv.gz"]
    with pytest.raises(FileExistsError, match="empty folder"):
        write_source(spec, tmp_path / "source")

    head = pd.read_csv(paths[1], dtype=str, keep_default_na=False, nrows=200)
    assert tuple(head.columns) == SOURCE_COLUMNS
    assert head["InvoiceDate"].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:00").all()
    assert (head["Customer ID"] == "").any() and head["Customer ID"].str.fullmatch(r"(\d+)?").all()

    raw = CsvSource(path=str(tmp_path / "source")).read(spark)
    expected_lines = sum(generate_block(spec, block)["Invoice"].size for block in (0, 1))
    assert raw.count() == expected_lines == written.lines
    renamed = raw.withColumnsRenamed(
        {
            "Invoice": "invoice",
            "StockCode": "stock_code",
            "Description": "description",
            "Quantity": "quantity",
            "InvoiceDate": "invoice_date",
            "Price": "price",
            "Customer ID": "customer_id",
            "Country": "country",
        }
    )
    clean = clean_transactions(renamed, country="Germany")
    counts = clean.selectExpr(
        "count(*) as rows",
        "count(distinct customer_id) as customers",
        "sum(cast(is_return as int)) as returns",
        "sum(cast(invoice_date is null or revenue is null as int)) as unparsed",
    ).first()
    assert counts["unparsed"] == 0 and counts["returns"] > 0
    assert 0.4 * spec.n_customers < counts["customers"] < 0.6 * spec.n_customers


def test_the_bgnbd_fit_on_the_pipelines_features_recovers_the_true_parameters(spark):
    """The generator's claim, checked end to end: lines -> clean -> features -> calibration summary -> fit.

    Purchases are continuous-time events counted as purchase days, so two on one day merge; at these
    rates that happens to well under 1% of purchases and the truth stays inside 4 standard errors.
    """
    true = BGNBDParams(r=0.6, alpha=6.0, a=0.8, b=3.0)
    spec = SyntheticSpec(
        n_customers=6000,
        seed=11,
        purchases=true,
        countries=("Germany",),
        country_weights=(1.0,),
        lines_per_invoice=1.0,
        anonymous_share=0.0,
    )
    lines = pd.concat([pd.DataFrame(generate_block(spec, 0))], ignore_index=True)
    tx = pd.DataFrame(
        {
            "customer_id": lines["Customer ID"].astype(str),
            "invoice": lines["Invoice"],
            "stock_code": lines["StockCode"],
            "quantity": lines["Quantity"].astype("int32"),
            "revenue": lines["Quantity"] * lines["Price"],
            "is_return": lines["Invoice"].str.startswith("C"),
            "invoice_date": lines["InvoiceDate"].astype("datetime64[us]"),
        }
    )
    snapshot = spec.end - dt.timedelta(days=1)
    features = compute_features_repurchase_fn(
        spark.createDataFrame(tx),
        "invoice_date",
        snapshot,
        snapshot,
        key_columns=["customer_id", "snapshot_date"],
        windows_days=[30],
    ).toPandas()
    assert len(features) == spec.n_customers
    summary = calibration_summary(features)
    fitted = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])

    def total_ll(log_params: np.ndarray) -> float:
        return float(
            bgnbd_log_likelihood(
                BGNBDParams(*np.exp(log_params)), summary["frequency"], summary["recency"], summary["T"]
            ).sum()
        )

    theta_hat = np.log([fitted.r, fitted.alpha, fitted.a, fitted.b])
    theta_true = np.log([true.r, true.alpha, true.a, true.b])
    se = _observed_information_se(total_ll, theta_hat)
    assert np.all(se < 0.3), se
    assert np.all(np.abs(theta_hat - theta_true) < Z * se), (fitted, se)


def test_customers_for_lines_hits_the_requested_size():
    spec = SyntheticSpec(n_customers=1, seed=2)
    n = customers_for_lines(spec, 200_000)
    made = sum(
        generate_block(spec.with_customers(n), block)["Invoice"].size for block in range(-(-n // BLOCK_CUSTOMERS))
    )
    assert 0.9 * 200_000 < made < 1.1 * 200_000
