"""What a person looks at after an evaluation: curves, confusion matrix, importance, a model card."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


def _figure(size: tuple[float, float] = (6, 4.5)):
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster or in CI
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def log_figure(figure: Any, artifact_path: str) -> None:
    """Log to the active MLflow run and free it: pyplot keeps every open figure alive."""
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(figure, artifact_path)
    plt.close(figure)


def evaluation_figures(
    task: str, y_true: np.ndarray, prediction: np.ndarray, baseline: np.ndarray | None = None
) -> dict[str, Any]:
    """file name -> matplotlib figure for the task's standard plots."""
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    if task == "binary":
        for file_name, display in (("roc_curve.png", RocCurveDisplay), ("pr_curve.png", PrecisionRecallDisplay)):
            fig, ax = _figure()
            display.from_predictions(y_true, prediction, name="candidate", ax=ax)
            if baseline is not None:
                display.from_predictions(y_true, baseline, name="baseline", ax=ax)
            figures[file_name] = fig
        fig, ax = _figure()
        CalibrationDisplay.from_predictions(y_true, prediction, n_bins=10, strategy="quantile", name="candidate", ax=ax)
        figures["calibration_curve.png"] = fig
    else:
        fig, ax = _figure()
        ConfusionMatrixDisplay.from_predictions(y_true, prediction, ax=ax, colorbar=False)
        ax.set_title("candidate: true vs predicted bucket")
        figures["confusion_matrix.png"] = fig
    return figures


def permutation_importance_figure(
    model: Any, X: pd.DataFrame, y: np.ndarray, score: Callable[[Any, pd.DataFrame, np.ndarray], float], seed: int
) -> tuple[Any, pd.DataFrame]:
    """Drop in the gate metric when each feature is shuffled: what the model actually relies on."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, X, y, scoring=score, n_repeats=5, random_state=seed)
    table = pd.DataFrame(
        {"feature": X.columns, "importance_mean": result.importances_mean, "importance_std": result.importances_std}
    ).sort_values("importance_mean")
    fig, ax = _figure((6, max(3.0, 0.25 * len(table))))
    ax.barh(table["feature"], table["importance_mean"], xerr=table["importance_std"])
    ax.set_xlabel("drop in score when shuffled")
    fig.tight_layout()
    return fig, table.sort_values("importance_mean", ascending=False)


def _value(metrics: dict[str, float] | None, name: str) -> str:
    if not metrics or name not in metrics:
        return "–"
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None or np.isnan(low):
        return f"{metrics[name]:.3f}"
    return f"{metrics[name]:.3f} [{low:.3f}, {high:.3f}]"


def model_card(
    *,
    title: str,
    facts: dict[str, Any],
    metric_names: list[str],
    candidate: dict[str, float],
    baseline: dict[str, float] | None,
    champion: dict[str, float] | None,
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
    lines += ["", "## Gate", "", "| check | passed | detail |", "|---|---|---|"]
    lines += [
        f"| {check['name']} | {'yes' if check['passed'] else 'no'} | {check['detail']} |" for check in verdict["checks"]
    ]
    lines += ["", f"**Verdict:** {'passed' if verdict['passed'] else 'failed'}. **Action:** {action}", ""]
    return "\n".join(lines)


def monitoring_figures(table: pd.DataFrame, date: str) -> dict[str, Any]:
    """Drift of the latest scoring date (column `date`) per feature, and performance and score drift over time."""
    figures = {}
    latest = table[date].max()
    psi = table[(table[date] == latest) & (table["metric"] != "performance")].sort_values("value")
    fig, ax = _figure((6, max(3.0, 0.25 * len(psi))))
    ax.barh(psi["subject"], psi["value"])
    if len(psi):
        ax.axvline(psi["threshold"].max(), color="red", linestyle="--")
    ax.set_xlabel(f"PSI on {latest} against training")
    fig.tight_layout()
    figures["drift_latest.png"] = fig
    over_time = table[table["metric"] != "feature_psi"].pivot_table(index=date, columns="metric", values="value")
    fig, ax = _figure((7, 4))
    over_time.plot(ax=ax, marker="o")
    ax.set_title("realised performance and prediction drift by scoring date")
    fig.tight_layout()
    figures["performance_over_time.png"] = fig
    return figures
