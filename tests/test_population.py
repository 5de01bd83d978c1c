"""Who a country's models learn from (country.training_population) and who they serve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from clv.population import HOME_SHARE
from mlops.config import compose_config, validate_config
from mlops.errors import ConfigError
from mlops.population import population_of

POOLED = ["country=DE", "country.training_population=pooled"]
SHARES = [0.0, 0.49, 0.5, 1.0]


def cleaning_function(cfg: DictConfig):
    return population_of(cfg).cleaning_function(cfg.use_case.cleaning.fn)


def feature_function(cfg: DictConfig):
    return population_of(cfg).feature_function(cfg.model.features.fn)


def home_rows(df, cfg: DictConfig):
    return population_of(cfg).served_rows(df)


def home_mask(frame, cfg: DictConfig):
    return population_of(cfg).served_mask(frame)


def test_the_default_is_the_countrys_own_customers():
    cfg = compose_config(["country=DE"])
    assert cfg.country.training_population == "country"
    assert cleaning_function(cfg).keywords["country"] == "Germany"
    assert "home_country" not in feature_function(cfg).keywords


def test_pooled_cleans_every_country_and_adds_the_home_share_as_a_feature():
    cfg = compose_config(POOLED)
    validate_config(cfg)
    assert cleaning_function(cfg).keywords["country"] is None
    assert feature_function(cfg).keywords["home_country"] == "Germany"


def test_pooled_needs_a_home_country():
    with pytest.raises(ConfigError, match="needs a home country") as caught:
        validate_config(compose_config([*POOLED, "country.source_value=null"]))
    assert caught.value.where == "config key country.training_population"


def test_a_pooled_model_must_see_its_home_share():
    with pytest.raises(ConfigError, match=HOME_SHARE) as caught:
        validate_config(compose_config([*POOLED, "model.features.columns=[purchase_count,revenue_total]"]))
    assert caught.value.where == "config key model.features.columns"
    validate_config(compose_config([*POOLED, f"model.features.columns=[purchase_count,{HOME_SHARE}]"]))


@pytest.mark.parametrize(("overrides", "kept"), [(["country=DE"], SHARES), (POOLED, [0.5, 1.0])])
def test_home_rows_keep_customers_with_at_least_half_their_purchases_in_the_country(spark, overrides, kept):
    cfg = compose_config(overrides)
    rows = spark.createDataFrame(
        [(f"c{i}", share) for i, share in enumerate(SHARES)], f"customer_id string, {HOME_SHARE} double"
    )
    assert sorted(row[HOME_SHARE] for row in home_rows(rows, cfg).collect()) == kept
    frame = pd.DataFrame({HOME_SHARE: SHARES})
    assert sorted(frame[home_mask(frame, cfg)][HOME_SHARE]) == kept  # the pandas twin agrees
    assert isinstance(home_mask(frame, compose_config(POOLED)), np.ndarray)
