"""The deployment gate: thresholds, the textbook baseline and the champion, as pure decisions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.metrics import LOWER_IS_BETTER


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    reference: float | None
    detail: str


@dataclass
class Verdict:
    passed: bool
    beats_champion: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [check.detail for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "beats_champion": self.beats_champion,
            "checks": [asdict(check) for check in self.checks],
            "reasons": self.reasons,
        }


def _better_or_equal(metric: str, value: float, reference: float) -> bool:
    return value <= reference if metric in LOWER_IS_BETTER else value >= reference


def _threshold_checks(candidate: dict[str, float], thresholds: dict[str, dict[str, float]]) -> list[Check]:
    checks = []
    for metric, bounds in thresholds.items():
        value = candidate.get(metric)
        for kind, bound in bounds.items():
            ok = value is not None and (value >= bound if kind == "min" else value <= bound)
            relation = ">=" if kind == "min" else "<="
            checks.append(
                Check(
                    f"threshold.{metric}.{kind}", ok, value, bound, f"{metric}={_fmt(value)} must be {relation} {bound}"
                )
            )
    return checks


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


def decide(
    candidate: dict[str, float],
    *,
    thresholds: dict[str, dict[str, float]],
    baseline: dict[str, float] | None = None,
    baseline_metric: str | None = None,
    baseline_tolerance: float = 0.0,
    champion: dict[str, float] | None = None,
    champion_metric: str | None = None,
    min_improvement: float = 0.0,
) -> Verdict:
    """Pass = every threshold holds and the candidate is not worse than the baseline by more than
    the tolerance. Beating the champion (or there being none) is decided separately: a candidate
    can pass (challenger) without replacing a better champion."""
    checks = _threshold_checks(candidate, thresholds)
    if baseline is not None and baseline_metric:
        value, reference = candidate.get(baseline_metric), baseline.get(baseline_metric)
        if reference is None or value is None:
            ok, detail = False, f"{baseline_metric} missing for candidate or baseline"
        else:
            lower = baseline_metric in LOWER_IS_BETTER
            allowed = reference + baseline_tolerance if lower else reference - baseline_tolerance
            ok = _better_or_equal(baseline_metric, value, allowed)
            detail = (
                f"{baseline_metric}={_fmt(value)} vs baseline {_fmt(reference)} "
                f"(tolerance {baseline_tolerance}: must be {'<=' if lower else '>='} {allowed:.4f})"
            )
        checks.append(Check(f"baseline.{baseline_metric}", ok, value, reference, detail))
    passed = all(check.passed for check in checks)

    if champion is None or not champion_metric:
        beats, detail, reference = True, "no current champion", None
    else:
        value, reference = candidate.get(champion_metric), champion.get(champion_metric)
        lower = champion_metric in LOWER_IS_BETTER
        needed = None if reference is None else (reference - min_improvement if lower else reference + min_improvement)
        beats = value is not None and needed is not None and _better_or_equal(champion_metric, value, needed)
        detail = (
            f"{champion_metric}={_fmt(value)} vs champion {_fmt(reference)} "
            f"(must be {'<=' if lower else '>='} {_fmt(needed)})"
        )
    checks.append(
        Check(f"champion.{champion_metric or 'none'}", beats, candidate.get(champion_metric or ""), reference, detail)
    )
    # the champion comparison never fails the gate: it only decides promotion
    return Verdict(passed=passed, beats_champion=passed and beats, checks=checks)
