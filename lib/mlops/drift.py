"""Population stability: profiles saved at training time, PSI of new data against them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

# a bin that is empty on one side would make PSI infinite; this floor keeps it large but finite
_FLOOR = 1e-4


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over matching bins of two distributions."""
    e = np.clip(np.asarray(expected, dtype=float), _FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), _FLOOR, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def bin_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Inner quantile cut points of the non-missing values (deduplicated: counts have ties)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return []
    return sorted(set(np.quantile(values, np.arange(1, bins) / bins).tolist()))


def proportions(values: np.ndarray, edges: list[float]) -> list[float]:
    """Share of values in each bin (-inf, e1], (e1, e2], ..., (ek, inf), then the share missing."""
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(np.asarray(edges), values[~missing], side="left"), minlength=len(edges) + 1)
    total = max(len(values), 1)
    return (counts / total).tolist() + [float(missing.sum()) / total]


def profile(frame: pd.DataFrame, bins: int = 10) -> dict[str, dict[str, list[float]]]:
    """Per column: training bin edges and proportions, saved with the model for monitoring."""
    out = {}
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=float)
        edges = bin_edges(values, bins)
        out[str(column)] = {"edges": edges, "proportions": proportions(values, edges)}
    return out


def drift(saved: dict[str, dict[str, Any]], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of each profiled column of `frame` against its saved training profile."""
    return {
        column: psi(spec["proportions"], proportions(frame[column].to_numpy(dtype=float), spec["edges"]))
        for column, spec in saved.items()
        if column in frame.columns
    }
