"""The gate as a pure decision: thresholds, and paired rules against the baseline and the champion."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.gate import Rule, decide
from mlops.metrics import Improvement, bootstrap_ci, metric, paired_improvement

THRESHOLDS = {"roc_auc": {"min": 0.6}, "brier": {"max": 0.25}}
NOT_WORSE = Rule("roc_auc", "high", 0.0)  # the small-country rule
BETTER = Rule("roc_auc", "low", 0.0)  # significantly better
CUSTOMERS = 120  # a small country's test set


def gate(candidate, *, over_baseline=None, rule=NOT_WORSE, over_champion=None, champion_rule=None):
    return decide(
        candidate,
        thresholds=THRESHOLDS,
        versus_baseline=rule,
        over_baseline=over_baseline,
        versus_champion=champion_rule or Rule("roc_auc", "estimate", 0.0),
        over_champion=over_champion,
        has_champion=over_champion is not None,
    )


def _customers(seed: int, n: int = CUSTOMERS):
    """Labels, the baseline's score, and noise to make candidates from, for n customers."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=1.0, size=n) > 0).astype(int)
    baseline = signal + rng.normal(scale=0.5, size=n)
    return y, baseline, rng


def _improvement(y, candidate, baseline, name="roc_auc"):
    return paired_improvement(name, y, candidate, baseline, groups=np.arange(len(y)), n_resamples=200, seed=0)


GOOD = {"roc_auc": 0.8, "brier": 0.2}


def test_below_threshold_fails_with_the_numbers():
    verdict = gate({"roc_auc": 0.55, "brier": 0.2}, over_baseline=Improvement("roc_auc", 0.0, -0.01, 0.01))
    assert not verdict.passed and not verdict.beats_champion
    assert verdict.reasons == ["roc_auc=0.5500 must be >= 0.6"]


def test_lower_is_better_thresholds_use_max():
    verdict = gate({"roc_auc": 0.8, "brier": 0.3}, over_baseline=Improvement("roc_auc", 0.0, -0.01, 0.01))
    assert not verdict.passed and "brier=0.3000 must be <= 0.25" in verdict.reasons


def test_missing_metric_or_improvement_fails_rather_than_passes():
    assert not gate({"roc_auc": 0.8}, over_baseline=Improvement("roc_auc", 0.0, -0.01, 0.01)).passed
    verdict = gate(GOOD, over_baseline=None)
    assert not verdict.passed and verdict.reasons == [
        "roc_auc improvement over baseline missing: high end must be >= 0 (not significantly worse)"
    ]


def test_an_undefined_interval_never_passes():
    verdict = gate(GOOD, over_baseline=Improvement("roc_auc", 0.01, float("nan"), float("nan")))
    assert not verdict.passed


def test_worse_than_the_baseline_by_more_than_noise_is_rejected():
    y, baseline, rng = _customers(seed=1)
    worse = baseline + rng.normal(scale=2.0, size=len(y))  # the same signal, drowned
    improvement = _improvement(y, worse, baseline)
    assert improvement.high < 0  # measurably worse on these 120 customers
    verdict = gate(GOOD, over_baseline=improvement)
    assert not verdict.passed
    assert verdict.reasons[0].startswith(f"roc_auc improvement over baseline {improvement}: high end must be >= 0")


def test_within_noise_passes_the_small_country_rule_but_not_significantly_better():
    y, baseline, rng = _customers(seed=2)
    similar = baseline + rng.normal(scale=0.3, size=len(y))
    improvement = _improvement(y, similar, baseline)
    assert improvement.low < 0 < improvement.high
    assert gate(GOOD, over_baseline=improvement, rule=NOT_WORSE).passed
    rejected = gate(GOOD, over_baseline=improvement, rule=BETTER)
    assert not rejected.passed and "low end must be >= 0 (significantly better)" in rejected.reasons[0]


def test_clearly_better_passes_the_significantly_better_rule():
    y, baseline, rng = _customers(seed=3, n=2000)
    better = baseline - rng.normal(scale=0.2, size=len(y)) + 0.6 * (y - 0.5)
    improvement = _improvement(y, better, baseline)
    assert improvement.low > 0
    assert gate(GOOD, over_baseline=improvement, rule=BETTER).passed
    # a margin asks for more than better
    assert not gate(GOOD, over_baseline=improvement, rule=Rule("roc_auc", "low", improvement.high)).passed


def test_the_paired_interval_sees_a_difference_that_separate_intervals_hide():
    """Both models find the same customers easy: their separate intervals overlap although every
    resample ranks the candidate ahead. That is why the gate bounds the difference's interval."""
    y, baseline, rng = _customers(seed=4, n=600)
    better = baseline + 0.25 * (y - 0.5) + rng.normal(scale=0.05, size=len(y))
    groups = np.arange(len(y))
    fn = metric("roc_auc")
    candidate_ci = bootstrap_ci(fn, y, better, groups=groups, n_resamples=200)
    baseline_ci = bootstrap_ci(fn, y, baseline, groups=groups, n_resamples=200)
    assert candidate_ci[0] < baseline_ci[1]  # overlapping
    assert _improvement(y, better, baseline).low > 0


def test_brier_improvement_is_positive_when_the_candidate_is_lower():
    y, _, rng = _customers(seed=5, n=500)
    sharp = np.clip(0.8 * y + 0.1 + rng.normal(scale=0.05, size=len(y)), 0, 1)
    vague = np.full(len(y), y.mean())
    improvement = _improvement(y, sharp, vague, name="brier")
    assert improvement.estimate == pytest.approx(metric("brier")(y, vague) - metric("brier")(y, sharp))
    assert improvement.low > 0


def test_the_champion_decides_promotion_not_passing():
    not_worse = Improvement("roc_auc", 0.0, -0.01, 0.01)
    worse = gate(GOOD, over_baseline=not_worse, over_champion=Improvement("roc_auc", -0.05, -0.08, -0.02))
    assert worse.passed and not worse.beats_champion
    better = gate(GOOD, over_baseline=not_worse, over_champion=Improvement("roc_auc", 0.01, -0.01, 0.03))
    assert better.beats_champion
    not_enough = gate(
        GOOD,
        over_baseline=not_worse,
        over_champion=Improvement("roc_auc", 0.002, -0.01, 0.03),
        champion_rule=Rule("roc_auc", "estimate", 0.005),
    )
    assert not not_enough.beats_champion
    assert not_enough.checks[-1].detail.endswith(
        "estimate end must be >= 0.005 (better on the point estimate by 0.005)"
    )


def test_without_a_champion_a_passing_candidate_promotes():
    verdict = gate(GOOD, over_baseline=Improvement("roc_auc", 0.0, -0.01, 0.01))
    assert verdict.passed and verdict.beats_champion and verdict.checks[-1].detail == "no current champion"


def test_a_failing_candidate_never_beats_the_champion():
    verdict = gate(
        {"roc_auc": 0.9, "brier": 0.5},
        over_baseline=Improvement("roc_auc", 0.1, 0.05, 0.15),
        over_champion=Improvement("roc_auc", 0.2, 0.1, 0.3),
    )
    assert not verdict.passed and not verdict.beats_champion
    assert verdict.to_dict()["checks"][-1]["name"] == "champion.roc_auc"
