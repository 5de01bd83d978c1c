"""What a model predicts: how raw labels become classes, and probabilities become predictions.

The fitted state (bucket edges, training class shares) is logged with the model as target.json,
so evaluation and batch inference decode exactly as training did.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from mlops.errors import ConfigError, TrainingDataError


def rank_into_shares(values: np.ndarray, classes: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Assign classes by rank: the lowest shares[0] of values get classes[0], and so on.

    Ties keep input order (stable sort), so the same scores always give the same classes.
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(np.asarray(shares, dtype=float))
    cumulative = cumulative / cumulative[-1]
    position = (np.arange(len(values)) + 0.5) / max(len(values), 1)
    decoded = np.empty(len(values), dtype=int)
    decoded[order] = np.asarray(classes)[np.searchsorted(cumulative, position, side="left").clip(0, len(classes) - 1)]
    return decoded


def require_classes(y: np.ndarray, part: str, table: str) -> None:
    """A model needs at least two classes to learn and two to be measured on."""
    if len(np.unique(y)) < 2:
        raise TrainingDataError(
            f"the {part} set has {len(y)} rows and only label value(s) {sorted(set(y.tolist()))}",
            where=table,
            fix="use more data (env.sample_fraction, more history) or a different horizon/country",
        )


class BinaryTarget:
    """A 0/1 label; the prediction is the probability of 1."""

    task = "binary"

    def fit(self, y_raw: np.ndarray) -> BinaryTarget:
        return self

    def transform(self, y_raw: np.ndarray) -> np.ndarray:
        return np.asarray(y_raw).astype(int)

    def predict(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return np.asarray(proba)[:, list(classes).index(1)]

    def score(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The continuous output monitored for drift: P(1)."""
        return self.predict(proba, classes)

    def from_score(self, score: np.ndarray) -> np.ndarray:
        """A baseline's probability is already the prediction."""
        return np.asarray(score, dtype=float)

    def state(self) -> dict[str, Any]:
        return {}


class BucketTarget:
    """Class 0 = no positive value; classes 1..k cut at edges of the positive values.

    Edges are quantiles of the buyers' values in the training rows unless fixed in config
    (per country in model_country). Decoding `argmax` picks the likeliest class;
    `ranked_expected_class` ranks customers by expected class and cuts them into the training
    class shares, which keeps the predicted class mix equal to the real one and scores far
    better on ordinal metrics when one class dominates.
    """

    task = "multiclass"
    DECODINGS = ("argmax", "ranked_expected_class")

    def __init__(
        self,
        buckets: int = 3,
        edges: list[float] | None = None,
        decoding: str = "argmax",
        class_shares: list[float] | None = None,
    ) -> None:
        if decoding not in self.DECODINGS:
            raise ConfigError(
                f"unknown decoding {decoding!r}", where="model.target.decoding", fix=f"one of {list(self.DECODINGS)}"
            )
        if int(buckets) < 1:
            raise ConfigError(f"buckets={buckets} must be >= 1", where="model.target.buckets", fix="e.g. 3")
        if edges is not None and (len(edges) != int(buckets) - 1 or list(edges) != sorted(edges)):
            raise ConfigError(
                f"edges {list(edges)} must be {int(buckets) - 1} increasing values",
                where="model.target.edges",
                fix="give buckets-1 increasing cut points, or null",
            )
        self.buckets = int(buckets)
        self.edges = None if edges is None else [float(e) for e in edges]
        self.decoding = decoding
        self.class_shares = None if class_shares is None else [float(s) for s in class_shares]

    def fit(self, y_raw: np.ndarray) -> BucketTarget:
        y_raw = np.asarray(y_raw, dtype=float)
        if self.edges is None:
            positive = y_raw[y_raw > 0]
            if len(positive) < self.buckets:
                raise ConfigError(
                    f"only {len(positive)} positive values to cut into {self.buckets} buckets",
                    where="model.target",
                    fix="use fewer buckets, fixed edges, or more data",
                )
            self.edges = [float(q) for q in np.quantile(positive, np.arange(1, self.buckets) / self.buckets)]
        counts = np.bincount(self.transform(y_raw), minlength=self.buckets + 1)
        self.class_shares = (counts / counts.sum()).tolist()
        return self

    def transform(self, y_raw: np.ndarray) -> np.ndarray:
        if self.edges is None:
            raise ConfigError("bucket edges are not known", where="model.target", fix="fit the target first")
        y_raw = np.asarray(y_raw, dtype=float)
        buckets = 1 + np.searchsorted(np.asarray(self.edges), y_raw, side="left")
        return np.where(y_raw > 0, buckets, 0).astype(int)

    def predict(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        proba, classes = np.asarray(proba), np.asarray(classes)
        if self.decoding == "argmax":
            return classes[np.argmax(proba, axis=1)]
        return self.rank(proba @ classes.astype(float))

    def score(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The continuous output monitored for drift: the expected class."""
        return np.asarray(proba) @ np.asarray(classes).astype(float)

    def from_score(self, score: np.ndarray) -> np.ndarray:
        """A baseline's ordinal score (e.g. expected value) cut into the training class shares."""
        return self.rank(score)

    def rank(self, values: np.ndarray) -> np.ndarray:
        """Any ordinal score (expected class, expected value) cut into the training class shares."""
        if self.class_shares is None:
            raise ConfigError("class shares are not known", where="model.target", fix="fit the target first")
        return rank_into_shares(values, np.arange(self.buckets + 1), np.asarray(self.class_shares))

    def state(self) -> dict[str, Any]:
        return {
            "buckets": self.buckets,
            "edges": self.edges,
            "decoding": self.decoding,
            "class_shares": self.class_shares,
        }


def target_to_dict(target: BinaryTarget | BucketTarget) -> dict[str, Any]:
    return {"_target_": f"{type(target).__module__}.{type(target).__qualname__}", **target.state()}


def target_from_dict(spec: dict[str, Any]) -> BinaryTarget | BucketTarget:
    """Rebuild a fitted target from target.json; only classes of this module are accepted."""
    spec = dict(spec)
    path = str(spec.pop("_target_", ""))
    module, _, name = path.rpartition(".")
    if module != __name__ or name not in ("BinaryTarget", "BucketTarget"):
        raise ConfigError(f"target.json names {path!r}", where="target.json", fix="re-train the model")
    return getattr(importlib.import_module(module), name)(**spec)
