"""BG/NBD and Gamma-Gamma as features (clv.features.model_based): fitted per snapshot on that snapshot's
own rows, so that nothing after a snapshot reaches its features.

One small shop of 32 customers, computed once per module at three snapshots: on 2010-06-30 everyone
has bought on one day only (BG/NBD cannot be fitted: nulls); by 2011-01-31 and 2011-02-28 21 of them
have come back, enough for BG/NBD and for Gamma-Gamma (>= 20 repeat buyers), some still buying and
some long gone.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from clv.baselines import BGNBDBaseline
from clv.features import (
    BGNBD_COLUMNS,
    bgnbd_snapshot_scores,
    compute_features_ltv_fn,
    compute_features_repurchase_fn,
)
from tests.test_features import KEYS, TRANSACTION_SCHEMA, TS, tx

D = dt.date
JUN, JAN, FEB = D(2010, 6, 30), D(2011, 1, 31), D(2011, 2, 28)
SNAPSHOTS = [JUN, JAN, FEB]
HORIZON = 90


def _shop() -> list[tuple]:
    """Invoice lines of 32 customers who first buy in June 2010 (a seventh of them with two invoices
    that day: two purchases, still one purchase day) and come back at their own rate until they
    drop out, if they do before 2011-02-28: the BG/NBD story, drawn with a fixed seed."""
    rng = np.random.default_rng(11)
    lines = []
    for i in range(32):
        customer, first = f"C{i:02d}", D(2010, 6, 1 + i % 28)
        weekly_rate, lifetime = rng.gamma(1.0, 0.4), int(rng.exponential(200))
        days, day = [first] * (2 if i % 7 == 1 else 1), first
        while True:
            day += dt.timedelta(days=max(1, int(rng.exponential(7 / max(weekly_rate, 1e-3)))))
            if day > FEB or (day - first).days > lifetime:
                break
            if day > JUN and day != days[-1]:
                days.append(day)
        price = 2.0 + i % 5  # spenders differ
        for n, day in enumerate(days):
            lines.append(tx(customer, f"{i}-{n}", "P1", 1 + n % 3, price, TS(day.year, day.month, day.day, 9 + n % 8)))
    return lines


# After 2011-01-31: existing customers come back (in February and after the last snapshot), and a
# new customer turns up; none of it may move a row at 2010-06-30 or 2011-01-31.
LATER = [
    tx("C01", "L1", "P1", 5, 9.0, TS(2011, 2, 1, 0, 0, 0)),  # the first second after the January snapshot
    tx("C01", "L2", "P1", 2, 9.0, TS(2011, 2, 14, 12)),
    tx("C05", "L3", "P2", 1, 50.0, TS(2011, 2, 26, 12)),
    tx("C03", "L4", "P1", 1, 4.0, TS(2011, 3, 10, 12)),  # after the last snapshot too
    tx("N01", "L5", "P3", 3, 7.0, TS(2011, 2, 3, 12)),  # a new customer, who comes back in February
    tx("N01", "L6", "P3", 1, 7.0, TS(2011, 2, 20, 12)),
]


@pytest.fixture(scope="module")
def shop(spark):
    return spark.createDataFrame(_shop(), TRANSACTION_SCHEMA)


def _features(transactions, fn=compute_features_repurchase_fn, **kwargs):
    return fn(transactions, "invoice_date", JUN, FEB, key_columns=KEYS, dates=SNAPSHOTS, windows_days=[30], **kwargs)


def _collect(df) -> pd.DataFrame:
    """One Spark action; rows sorted by their keys."""
    rows = [row.asDict() for row in df.collect()]
    return pd.DataFrame(rows, columns=df.columns).sort_values(KEYS, ignore_index=True)


@pytest.fixture(scope="module")
def scored(shop) -> pd.DataFrame:
    return _collect(_features(shop, bgnbd_horizon_days=HORIZON))


def test_bgnbd_features_are_the_baseline_fitted_on_each_snapshots_own_rows(scored):
    assert list(scored.columns[-3:]) == list(BGNBD_COLUMNS)
    for day in (JAN, FEB):
        rows = scored[scored["snapshot_date"] == day].reset_index(drop=True)
        assert len(rows) == 32
        expected = BGNBDBaseline(time_unit_days=7).fit(rows)
        assert expected.gamma_gamma is not None  # the value is BG/NBD x Gamma-Gamma, not the mean-spend fallback
        for column, values in (
            ("bgnbd_p_alive", expected.prob_alive(rows)),
            ("bgnbd_expected_purchases", expected.expected_purchases(rows, HORIZON)),
            ("bgnbd_expected_value", expected.expected_value(rows, HORIZON)),
        ):
            assert rows[column].tolist() == pytest.approx(values.tolist(), rel=1e-9, abs=1e-12), (day, column)
        # the customers differ: some are likely gone, one-time buyers cannot have left
        assert rows["bgnbd_p_alive"].min() < 0.5
        assert (rows.loc[rows["purchase_days"] == 1, "bgnbd_p_alive"] == 1.0).all()
    # fitted per snapshot: one fit over both snapshots' stacked rows would give other values
    both = scored[scored["snapshot_date"] != JUN].reset_index(drop=True)
    stacked = BGNBDBaseline(time_unit_days=7).fit(both).expected_purchases(both, HORIZON)
    assert not np.allclose(both["bgnbd_expected_purchases"], stacked, rtol=1e-3)


def test_a_snapshot_without_a_repeat_buyer_gets_nulls(scored):
    june = scored[scored["snapshot_date"] == JUN]
    assert len(june) == 32 and (june["purchase_days"] == 1).all() and (june["purchase_count"] > 1).any()
    assert june[list(BGNBD_COLUMNS)].isna().all().all()
    assert scored.loc[scored["snapshot_date"] != JUN, list(BGNBD_COLUMNS)].notna().all().all()


def test_later_purchases_cannot_reach_a_snapshots_features(spark, shop, scored):
    with_later = _collect(_features(shop.union(spark.createDataFrame(LATER, shop.schema)), bgnbd_horizon_days=HORIZON))
    for day in (JUN, JAN):
        before = scored[scored["snapshot_date"] == day].reset_index(drop=True)
        after = with_later[with_later["snapshot_date"] == day].reset_index(drop=True)
        pd.testing.assert_frame_equal(after, before, check_exact=True)  # every column, to the last bit
    # the later lines do count at the snapshot after them: a new customer, and a refitted model
    feb_before = scored[scored["snapshot_date"] == FEB].set_index("customer_id")
    feb_after = with_later[with_later["snapshot_date"] == FEB].set_index("customer_id")
    assert set(feb_after.index) - set(feb_before.index) == {"N01"}
    moved = feb_after.loc[feb_before.index, "bgnbd_expected_value"] != feb_before["bgnbd_expected_value"]
    assert moved.all()


def test_switched_off_the_features_are_as_without_them(shop):
    off = _features(shop)
    assert not any(column.startswith("bgnbd_") for column in off.columns)
    on = _features(shop, bgnbd_horizon_days=HORIZON)
    assert on.columns == off.columns + list(BGNBD_COLUMNS)
    assert all(dict(on.dtypes)[name] == "double" for name in BGNBD_COLUMNS)
    ltv_off = _features(shop, fn=compute_features_ltv_fn)
    ltv_on = _features(shop, fn=compute_features_ltv_fn, bgnbd_horizon_days=HORIZON)
    assert ltv_on.columns == ltv_off.columns + list(BGNBD_COLUMNS)


def test_building_the_model_based_features_runs_no_spark_job(spark, shop):
    """Transformations only: the fits run inside the actions the stage takes anyway (under adaptive
    execution the added shuffle by snapshot is one more job inside such an action, not an action)."""
    tracker = spark.sparkContext.statusTracker()
    jobs_before = len(tracker.getJobIdsForGroup())
    _features(shop, fn=compute_features_ltv_fn, bgnbd_horizon_days=HORIZON)
    assert len(tracker.getJobIdsForGroup()) == jobs_before


def test_a_horizon_must_be_positive(shop):
    with pytest.raises(ValueError, match="bgnbd_horizon_days=0"):
        _features(shop, bgnbd_horizon_days=0)


def test_a_snapshots_scores_do_not_depend_on_the_order_its_rows_arrive_in(scored, caplog):
    """Spark hands a snapshot's rows over in shuffle order; a rerun must still write the same bits."""
    rows = scored.loc[scored["snapshot_date"] == FEB, list(scored.columns[:-3])].reset_index(drop=True)
    with caplog.at_level(logging.INFO, logger="clv"):
        forward = bgnbd_snapshot_scores(rows, "customer_id", "snapshot_date", HORIZON)
        backward = bgnbd_snapshot_scores(rows.iloc[::-1], "customer_id", "snapshot_date", HORIZON)
    pd.testing.assert_frame_equal(forward, backward, check_exact=True)
    assert "BG/NBD features at snapshot 2011-02-28: fitted on 32 customers, spend by Gamma-Gamma" in caplog.messages


def test_a_failed_fit_warns_with_the_snapshot_and_the_reason(caplog):
    """The per-snapshot function on its own (Spark runs it in a Python worker, out of caplog's reach)."""
    rows = pd.DataFrame(
        {
            "customer_id": ["B", "A"],
            "snapshot_date": [JUN, JUN],
            "purchase_days": [1, 1],
            "tenure_days": [10, 20],
            "days_since_last_purchase": [10, 20],
            "revenue_total": [5.0, 8.0],
            "purchase_count": [1, 2],
        }
    )
    with caplog.at_level(logging.INFO, logger="clv"):
        out = bgnbd_snapshot_scores(rows, "customer_id", "snapshot_date", HORIZON)
    assert out["customer_id"].tolist() == ["A", "B"]  # sorted, so that the fit does not depend on row order
    assert out[list(BGNBD_COLUMNS)].isna().all().all()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "2010-06-30" in warning.getMessage() and "repeat purchase" in warning.getMessage()
