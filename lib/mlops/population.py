"""Who a model learns from, is judged on and serves: a component of the use case (use_case.population).

The platform asks these questions at fixed points (cleaning and features are built through it,
the test set, the drift profile and scoring keep its served rows, extract reports its counts) and
never knows the answer's terms: countries, shares and homes belong to the use case's subclass,
e.g. clv.population.CountryPopulation. Without use_case.population everyone is served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame


class Population:
    """Everyone in the data: the model learns from, is judged on and serves the same rows."""

    def check(self, cfg: DictConfig) -> None:
        """Config rules of this population, run with the rest of the config checks before any work."""

    def describe(self) -> str:
        """A few words for the extract log: who the kept transactions belong to."""
        return ""

    def cleaning_function(self, fn_cfg: DictConfig) -> Callable[[DataFrame], DataFrame]:
        from hydra.utils import instantiate

        return instantiate(fn_cfg)

    def feature_function(self, fn_cfg: DictConfig) -> Callable[..., DataFrame]:
        from hydra.utils import instantiate

        return instantiate(fn_cfg)

    def served_rows(self, df: DataFrame) -> DataFrame:
        """The rows of the customers the model serves (and is judged and monitored on)."""
        return df

    def served_mask(self, frame: pd.DataFrame) -> Any:
        """pandas twin of served_rows: a boolean mask, or a slice that keeps every row."""
        return slice(None)

    def source_counts(self) -> dict[str, Column]:
        """Aggregates over the canonical source rows that extract computes in its own pass."""
        return {}

    def transaction_counts(self) -> dict[str, Column]:
        """Aggregates over the clean transactions that extract computes in its own pass."""
        return {}

    def report(self, source: dict[str, Any], transactions: dict[str, Any], where: str) -> None:
        """Warn about, or refuse (DataQualityError), what those counts show (each with `rows`), before
        anything is written."""


def population_of(cfg: DictConfig) -> Population:
    """The use case's population component (use_case.population), or everyone."""
    from omegaconf import OmegaConf

    from mlops.config import build

    spec = OmegaConf.select(cfg, "use_case.population")
    return Population() if spec is None else build(spec)
