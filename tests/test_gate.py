"""The gate as a pure decision: thresholds, baseline tolerance, champion comparison."""

from __future__ import annotations

from mlops.gate import decide

THRESHOLDS = {"roc_auc": {"min": 0.6}, "brier": {"max": 0.25}}


def gate(candidate, baseline=None, champion=None, tolerance=0.02, improvement=0.0):
    return decide(
        candidate,
        thresholds=THRESHOLDS,
        baseline=baseline,
        baseline_metric="roc_auc",
        baseline_tolerance=tolerance,
        champion=champion,
        champion_metric="roc_auc",
        min_improvement=improvement,
    )


def test_good_candidate_without_champion_passes_and_promotes():
    verdict = gate({"roc_auc": 0.8, "brier": 0.2}, baseline={"roc_auc": 0.79})
    assert verdict.passed and verdict.beats_champion and verdict.reasons == []


def test_below_threshold_fails_with_the_numbers():
    verdict = gate({"roc_auc": 0.55, "brier": 0.2})
    assert not verdict.passed and not verdict.beats_champion
    assert verdict.reasons == ["roc_auc=0.5500 must be >= 0.6"]


def test_lower_is_better_metrics_use_max():
    verdict = gate({"roc_auc": 0.8, "brier": 0.3})
    assert not verdict.passed and "brier=0.3000 must be <= 0.25" in verdict.reasons


def test_missing_metric_fails_rather_than_passes():
    assert not gate({"roc_auc": 0.8}).passed


def test_worse_than_baseline_beyond_tolerance_fails():
    assert gate({"roc_auc": 0.78, "brier": 0.2}, baseline={"roc_auc": 0.79}).passed  # within 0.02
    verdict = gate({"roc_auc": 0.76, "brier": 0.2}, baseline={"roc_auc": 0.79})
    assert not verdict.passed and "baseline" in verdict.reasons[0]


def test_champion_decides_promotion_not_passing():
    worse = gate({"roc_auc": 0.7, "brier": 0.2}, champion={"roc_auc": 0.75})
    assert worse.passed and not worse.beats_champion
    better = gate({"roc_auc": 0.76, "brier": 0.2}, champion={"roc_auc": 0.75}, improvement=0.005)
    assert better.beats_champion
    not_enough = gate({"roc_auc": 0.752, "brier": 0.2}, champion={"roc_auc": 0.75}, improvement=0.005)
    assert not not_enough.beats_champion


def test_a_failing_candidate_never_beats_the_champion():
    verdict = gate({"roc_auc": 0.9, "brier": 0.5}, champion={"roc_auc": 0.7})
    assert not verdict.passed and not verdict.beats_champion
    assert verdict.to_dict()["checks"][-1]["name"] == "champion.roc_auc"
