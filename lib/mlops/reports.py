"""What a person looks at after an evaluation: curves, confusion matrix, importance, a model card."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.metrics import Improvement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FigureSubject:
    """Whose figure it is: a PNG logged to MLflow is downloaded, shared and pasted on its own, so
    its title names the model, the country, the model version (or candidate run) and the date."""

    model: str
    country: str
    version: str  # "version 3", or "candidate run 1a2b3c4d" before registration
    date: str

    def title(self, what: str) -> str:
        return f"{what}\n{self.model} {self.country} · {self.version} · {self.date}"


def _figure(size: tuple[float, float] = (6, 4.5), rows: int = 1):
    """A figure and its axes: one Axes, or an array of `rows` stacked on a shared x axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster or in CI
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, figsize=size, sharex=True)


def log_figure(figure: Any, artifact_path: str) -> None:
    """Log to the active MLflow run and free it: pyplot keeps every open figure alive."""
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(figure, artifact_path)
    plt.close(figure)


def bucket_labels(edges: list[float], shares: list[float] | None) -> list[str]:
    """What each class of a BucketTarget means: its range of the label's value (class 0 is no
    positive value; a bucket holds values above its lower edge up to its upper one) and, when
    known, its share of the training rows."""
    bounds = [0.0, *edges]
    labels = ["0: ≤ 0"]
    labels += [f"{k}: {low:.4g}–{high:.4g}" for k, (low, high) in enumerate(zip(bounds, edges), start=1)]
    labels.append(f"{len(edges) + 1}: > {bounds[-1]:.4g}")
    if shares is not None:
        labels = [f"{label}\n({share:.0%} of train)" for label, share in zip(labels, shares)]
    return labels


def evaluation_figures(
    target: Any,
    y_true: np.ndarray,
    prediction: np.ndarray,
    baseline: np.ndarray | None = None,
    *,
    subject: FigureSubject,
    label: str,
) -> dict[str, Any]:
    """file name -> matplotlib figure for the target's standard plots; `label` says what the raw
    label is (e.g. "future_revenue in 90 days"), so a bucket or a positive class reads as a value."""
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    if target.task == "binary":
        for file_name, display, what in (
            ("roc_curve.png", RocCurveDisplay, "ROC curve"),
            ("pr_curve.png", PrecisionRecallDisplay, "precision-recall curve"),
        ):
            fig, ax = _figure()
            display.from_predictions(y_true, prediction, name="candidate", ax=ax)
            if baseline is not None:
                display.from_predictions(y_true, baseline, name="baseline", ax=ax)
            ax.set_title(subject.title(f"{what} on the test set, positive: {label} = 1"))
            figures[file_name] = fig
        fig, ax = _figure()
        CalibrationDisplay.from_predictions(y_true, prediction, n_bins=10, strategy="quantile", name="candidate", ax=ax)
        ax.set_title(subject.title(f"calibration on the test set, positive: {label} = 1"))
        figures["calibration_curve.png"] = fig
    else:
        classes = list(range(target.buckets + 1))
        names = bucket_labels(target.edges, target.class_shares)
        fig, ax = _figure((7, 6))
        ConfusionMatrixDisplay.from_predictions(
            y_true, prediction, labels=classes, display_labels=names, ax=ax, colorbar=False
        )
        ax.set_xlabel(f"predicted bucket of {label}")
        ax.set_ylabel(f"true bucket of {label}")
        ax.set_title(subject.title("test rows by true and predicted bucket"))
        fig.tight_layout()
        figures["confusion_matrix.png"] = fig
    return figures


def permutation_importance_figure(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    score: Callable[[Any, pd.DataFrame, np.ndarray], float],
    seed: int,
    *,
    metric_name: str,
    subject: FigureSubject,
) -> tuple[Any, pd.DataFrame]:
    """Drop in the gate metric (`score`, named `metric_name`) when each feature is shuffled: what the
    model actually relies on."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, X, y, scoring=score, n_repeats=5, random_state=seed)
    table = pd.DataFrame(
        {"feature": X.columns, "importance_mean": result.importances_mean, "importance_std": result.importances_std}
    ).sort_values("importance_mean")
    fig, ax = _figure((6, max(3.0, 0.25 * len(table))))
    ax.barh(table["feature"], table["importance_mean"], xerr=table["importance_std"])
    ax.set_xlabel(f"drop in {metric_name} when the feature is shuffled (mean ± sd of 5 shuffles)")
    ax.set_ylabel("feature")
    ax.set_title(subject.title(f"permutation importance on {len(X)} test rows"))
    fig.tight_layout()
    return fig, table.sort_values("importance_mean", ascending=False)


def _value(metrics: dict[str, float] | None, name: str) -> str:
    if not metrics or name not in metrics:
        return "–"
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None or np.isnan(low):
        return f"{metrics[name]:.3f}"
    return f"{metrics[name]:.3f} [{low:.3f}, {high:.3f}]"


def _improvement(values: dict[str, Improvement] | None, name: str) -> str:
    return "-" if not values or name not in values else str(values[name])


def model_card(
    *,
    title: str,
    facts: dict[str, Any],
    metric_names: list[str],
    candidate: dict[str, float],
    baseline: dict[str, float] | None,
    champion: dict[str, float] | None,
    improvements: dict[str, dict[str, Improvement] | None],
    verdict: dict[str, Any],
    action: str,
    confidence: float,
) -> str:
    """One page of markdown: what was trained on what, how good it is, against what, and the decision."""
    lines = [f"# {title}", ""]
    lines += [f"- **{key}:** {value}" for key, value in facts.items()]
    lines += [
        "",
        f"## Test metrics ({confidence:.0%} bootstrap intervals over the entity key)",
        "",
        "| metric | candidate | baseline (model.baseline) | champion |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {_value(candidate, name)} | {_value(baseline, name)} | {_value(champion, name)} |"
        for name in metric_names
    ]
    lines += [
        "",
        f"## Paired improvement ({confidence:.0%} bootstrap intervals over the same resampled entities)",
        "",
        "Candidate minus reference (brier: reference minus candidate), so positive is better. The gate's",
        "rules (model.gate.versus_*) bound an end of these intervals.",
        "",
        "| metric | over baseline | over champion |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {_improvement(improvements.get('baseline'), name)} | "
        f"{_improvement(improvements.get('champion'), name)} |"
        for name in metric_names
    ]
    lines += ["", "## Gate", "", "| check | passed | detail |", "|---|---|---|"]
    lines += [
        f"| {check['name']} | {'yes' if check['passed'] else 'no'} | {check['detail']} |" for check in verdict["checks"]
    ]
    lines += ["", f"**Verdict:** {'passed' if verdict['passed'] else 'failed'}. **Action:** {action}", ""]
    return "\n".join(lines)


def monitoring_figures(table: pd.DataFrame, date: str, *, model: str, country: str) -> dict[str, Any]:
    """Drift of the latest scoring date (column `date`) per feature, and performance and score drift
    over time. The titles name the model versions that scored, read from the table itself."""
    figures = {}
    latest = table[date].max()
    psi = table[(table[date] == latest) & (table["metric"] != "performance")].sort_values("value")
    fig, ax = _figure((6, max(3.0, 0.25 * len(psi))))
    ax.barh(psi["subject"], psi["value"])
    if len(psi):
        ax.axvline(psi["threshold"].max(), color="red", linestyle="--", label="threshold")
        ax.legend()
    ax.set_xlabel("PSI (population stability index) against training")
    ax.set_ylabel("feature, or the model's score")
    ax.set_title(
        _monitoring_subject(table[table[date] == latest], model, country, str(latest)).title(
            "feature and score drift against training"
        )
    )
    fig.tight_layout()
    figures["drift_latest.png"] = fig
    over_time = _over_time_figure(table, date, model, country)
    if over_time is not None:
        figures["performance_over_time.png"] = over_time
    return figures


def _monitoring_subject(rows: pd.DataFrame, model: str, country: str, when: str) -> FigureSubject:
    """The versions whose predictions these rows measure: monitoring spans model versions."""
    versions = sorted(rows["model_version"].dropna().astype(str).unique())
    return FigureSubject(model, country, f"version{'s' if len(versions) > 1 else ''} {', '.join(versions)}", when)


def _over_time_figure(table: pd.DataFrame, date: str, model: str, country: str) -> Any | None:
    """One panel per measure over time with its threshold: the realised metric (a floor) and the
    score's PSI (a ceiling) have different scales. A measure of one date is no trend (a dot on a
    wide date axis), so it is left out; with none left, there is no figure."""
    measures = table[table["metric"] != "feature_psi"]
    groups = [(name, rows.sort_values(date)) for name, rows in measures.groupby(["metric", "subject"])]
    series = [(name, rows) for name, rows in groups if rows[date].nunique() >= 2]
    if not series:
        dates = ", ".join(f"{subject}: {rows[date].nunique()}" for (_, subject), rows in groups) or "no rows"
        log.info("performance_over_time.png not drawn: no measure has two scoring dates yet (%s)", dates)
        return None
    fig, axes = _figure((7, 1.5 + 2.5 * len(series)), rows=len(series))
    axes = np.atleast_1d(axes)
    for ax, ((metric, subject), rows) in zip(axes, series):
        name = f"realised {subject}" if metric == "performance" else "PSI of the model's score"
        ax.plot(rows[date], rows["value"], marker="o", label=name)
        ax.plot(rows[date], rows["threshold"], color="red", linestyle="--", label="threshold")
        ax.set_ylabel(name)
        ax.legend()
    axes[-1].set_xlabel("scoring date")
    first, last = table[date].min(), table[date].max()
    axes[0].set_title(_monitoring_subject(measures, model, country, f"{first} to {last}").title("monitoring over time"))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
