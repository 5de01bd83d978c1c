"""The deployment gate: thresholds, the textbook baseline and the champion, as pure decisions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.metrics import Improvement

# what each end of the improvement's interval reaching `min` means, for the check's sentence
_MEANING = {
    "low": "significantly better",
    "estimate": "better on the point estimate",
    "high": "not significantly worse",
}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    reference: float | None
    detail: str


@dataclass(frozen=True)
class Rule:
    """`end` of the paired improvement's interval (low | estimate | high) must be >= `min`."""

    metric: str
    end: str = "high"
    min: float = 0.0

    @classmethod
    def of(cls, node: Any) -> Rule | None:
        """From a config node (model.gate.versus_*), or None where the config has none."""
        return None if node is None else cls(str(node.metric), str(node.end), float(node.min))

    def check(self, name: str, against: str, improvement: Improvement | None) -> Check:
        wanted = f"{self.end} end must be >= {self.min:g} ({_MEANING[self.end]}"
        wanted += ")" if self.min == 0 else f" by {self.min:g})"
        if improvement is None:
            return Check(name, False, None, self.min, f"{self.metric} improvement over {against} missing: {wanted}")
        value = improvement.end(self.end)
        ok = value == value and value >= self.min  # nan (an undefined interval) never passes
        detail = f"{self.metric} improvement over {against} {improvement}: {wanted}"
        return Check(name, ok, value, self.min, detail)


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
    versus_baseline: Rule | None = None,
    over_baseline: Improvement | None = None,
    versus_champion: Rule | None = None,
    over_champion: Improvement | None = None,
    has_champion: bool = False,
) -> Verdict:
    """Pass = every threshold holds and the paired improvement over the baseline meets its rule.

    Beating the champion (or there being none) is decided separately: a candidate can pass
    (challenger) without replacing a better champion. Both comparisons are on the interval of the
    difference on the same customers, not on two intervals side by side: that is the question the
    gate asks, and its interval is the narrower one.
    """
    checks = _threshold_checks(candidate, thresholds)
    if versus_baseline is not None:
        checks.append(versus_baseline.check(f"baseline.{versus_baseline.metric}", "baseline", over_baseline))
    passed = all(check.passed for check in checks)

    if not has_champion:
        champion_check = Check("champion.none", True, None, None, "no current champion")
    elif versus_champion is None:
        champion_check = Check("champion.none", True, None, None, "no champion rule (model.gate.versus_champion)")
    else:
        champion_check = versus_champion.check(f"champion.{versus_champion.metric}", "champion", over_champion)
    checks.append(champion_check)
    # the champion comparison never fails the gate: it only decides promotion
    return Verdict(passed=passed, beats_champion=passed and champion_check.passed, checks=checks)
