"""The model-quality evaluation's own logic: where validation sits, how a variant is chosen, and
what a population's figures are computed on."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from clv.studies import model_quality, pipeline_overrides
from mlops.config import compose_config
from mlops.errors import ConfigError

# the variants the study compared when they were a dict in its script: the experiment files must be the same
VARIANTS_BEFORE = {
    "default": [],
    "no seasonal features": ["model.features.fn.seasonal_window_days=null"],
    "+ snapshot month": ["model.features.fn.calendar_features=true"],
    "depth 2, 50 trees": ["model.estimator.max_depth=2", "model.estimator.max_iter=50"],
    "depth 3, 200 trees": ["model.estimator.max_depth=3", "model.estimator.max_iter=200"],
    "+ BG/NBD features": ["model.features.fn.bgnbd_horizon_days=${model.horizon_days}"],
    "calibrated (sigmoid)": ["model.calibration.method=sigmoid"],
    "calibrated (isotonic)": ["model.calibration.method=isotonic"],
}


@pytest.fixture(scope="module")
def quality():
    return model_quality


@pytest.fixture(scope="module")
def settings():
    """The study's settings as shipped (conf/quality.yaml)."""
    return compose_config(config_name="quality").quality


@pytest.mark.parametrize(
    ("cutoff", "expected"), [("2011-09-09", "2011-06-09"), ("2011-06-09", "2011-03-09"), ("2011-05-31", "2011-02-28")]
)
def test_validation_is_the_latest_snapshot_whose_horizon_closes_by_the_cutoff(quality, cutoff, expected):
    day = quality.validation_date(dt.date.fromisoformat(cutoff), 90)
    assert day.isoformat() == expected
    assert day + dt.timedelta(days=90) <= dt.date.fromisoformat(cutoff)


def _entry(variant: str, date: str, auc: float, validation_for: list[str]) -> dict:
    return {
        "training": "pooled",
        "model": "repurchase",
        "variant": variant,
        "date": date,
        "validation_for": validation_for,
        "metrics": {"model": {"all": {"roc_auc": auc}}},
    }


def test_a_variant_is_chosen_on_its_validation_snapshot_never_on_the_test(quality):
    results = {
        "runs": [
            # "deep" is best on the test snapshot, "default" on the validation snapshot: validation decides
            _entry("default", "2011-09-09", 0.80, []),
            _entry("deep", "2011-09-09", 0.90, []),
            _entry("default", "2011-06-09", 0.83, ["2011-09-09"]),
            _entry("deep", "2011-06-09", 0.82, ["2011-09-09"]),
        ]
    }
    choice = quality.choose_variants(results, [dt.date(2011, 9, 9)])["pooled"]["repurchase"]["2011-09-09"]
    assert choice == {
        "validation_date": "2011-06-09",
        "validation": {"default": 0.83, "deep": 0.82},
        "chosen": "default",
    }


def test_a_tie_on_validation_keeps_the_shipped_config(quality):
    results = {
        "runs": [
            _entry("deep", "2011-06-09", 0.82, ["2011-09-09"]),
            _entry("default", "2011-06-09", 0.82, ["2011-09-09"]),
        ]
    }
    chosen = quality.choose_variants(results, [dt.date(2011, 9, 9)])["pooled"]["repurchase"]["2011-09-09"]["chosen"]
    assert chosen == "default"


def test_population_figures_are_computed_on_that_population_only(quality, settings):
    rng = np.random.default_rng(0)
    n = 400
    country = np.where(np.arange(n) < 300, "United Kingdom", np.where(np.arange(n) < 350, "Germany", "France"))
    y = rng.integers(0, 2, n)
    # informative for the UK, reversed for everyone else: pooled figures would hide it
    score = np.where(country == "United Kingdom", y * 0.6 + rng.random(n) * 0.4, (1 - y) * 0.6 + rng.random(n) * 0.4)
    frame = pd.DataFrame(
        {"customer_id": np.arange(n).astype(str), "country": country, "y": y, "model": score, "heuristic": -score}
    )
    scored = quality.Scored("repurchase", "default", "2011-09-09", frame)
    metrics = quality.ModelMetrics.of(compose_config(["model=repurchase"]))
    assert metrics.headline == "roc_auc" and "brier" in metrics.names
    figures = quality.population_metrics(scored, "model", metrics, settings.populations, resamples=50, seed=1)
    for population, rows in [
        ("United Kingdom", country == "United Kingdom"),
        ("Germany", country == "Germany"),
        ("all except UK", country != "United Kingdom"),
        ("all", np.ones(n, dtype=bool)),
    ]:
        values = figures[population]
        assert values["customers"] == rows.sum()
        assert values["roc_auc"] == pytest.approx(roc_auc_score(y[rows], score[rows]))
        assert values["roc_auc_ci_low"] <= values["roc_auc"] <= values["roc_auc_ci_high"]
    assert figures["United Kingdom"]["roc_auc"] > 0.9 and figures["all except UK"]["roc_auc"] < 0.1
    assert "brier" in figures["all"]
    # a ranking heuristic gets no Brier score: it is not a probability
    skip = settings.heuristics.repurchase.skip_metrics
    assert (
        "brier"
        not in quality.population_metrics(
            scored, "heuristic", metrics, settings.populations, resamples=0, seed=1, skip=skip
        )["all"]
    )


def test_an_empty_population_reports_no_figures(quality, settings):
    frame = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3"],
            "country": ["Germany", "France", "Germany"],
            "y": [0, 1, 1],
            "model": [0.2, 0.7, 0.6],
        }
    )
    metrics = quality.ModelMetrics.of(compose_config(["model=repurchase"]))
    figures = quality.population_metrics(
        quality.Scored("repurchase", "default", "d", frame), "model", metrics, settings.populations, 0, 0
    )
    assert figures["United Kingdom"]["customers"] == 0 and "roc_auc" not in figures["United Kingdom"]
    assert math.isnan(figures["United Kingdom"]["positive_share"])
    assert "—" in "".join(
        quality.population_table({"metrics": {"model": figures}}, metrics, list(settings.populations))
    )


def test_a_later_report_part_replaces_only_its_own_runs(quality, settings):
    first = {
        "cutoffs": ["2011-09-09"],
        "seconds": {"total": 60.0},
        "runs": [
            _entry("default", "2011-06-09", 0.80, ["2011-09-09"]),
            {
                **_entry("default", "2011-06-09", 0.50, ["2011-09-09"]),
                "model": "ltv_bucket",
                "metrics": {"model": {"all": {"qwk": 0.50}}},
            },
        ],
    }
    again = {
        "cutoffs": ["2011-09-09"],
        "seconds": {"total": 30.0},
        "runs": [
            {
                **_entry("default", "2011-06-09", 0.60, ["2011-09-09"]),
                "model": "ltv_bucket",
                "metrics": {"model": {"all": {"qwk": 0.60}}},
            }
        ],
    }
    merged = quality.merge_results([first, again], settings.goals)
    assert [(entry["model"], entry["metrics"]["model"]["all"]) for entry in merged["runs"]] == [
        ("repurchase", {"roc_auc": 0.80}),
        ("ltv_bucket", {"qwk": 0.60}),
    ]
    assert merged["choices"]["pooled"]["ltv_bucket"]["2011-09-09"]["validation"] == {"default": 0.60}
    with pytest.raises(ValueError, match="cannot merge"):
        quality.merge_results([first, {**again, "cutoffs": ["2011-06-09"]}], settings.goals)


def test_variants_equal_to_the_pooled_shipped_config_are_not_run(quality, settings):
    """Compared with the pooled config, not with DE's: DE's small-country override (depth 2) must
    not make the depth-2 variant look like the shipped one."""
    same: dict[str, list[str]] = {}
    experiments = [quality.Experiment.load(name) for name in settings.experiments]
    kept = [e.variant for e in quality.distinct_variants(experiments, "repurchase", same, settings.pooled)]
    assert "depth 2, 50 trees" in kept and "default" in kept
    assert same == {"repurchase": ["depth 3, 200 trees"]}


def test_a_country_is_evaluated_alone_and_pooled_with_its_home_share(quality, settings):
    from mlops.population import population_of

    trainings = quality.country_trainings(["DE"])
    assert list(trainings) == ["DE", "DE pooled"]
    alone, pooled = (compose_config(overrides) for overrides in trainings.values())
    assert alone.country.code == pooled.country.code == "DE"
    assert not population_of(alone).pooled and population_of(pooled).pooled
    # DE's small-country estimator is for its ~100 customers; trained on every country's, the pooled one
    shipped = compose_config(["country=GB", "model=repurchase"]).model.estimator
    assert alone.model.estimator.max_depth != shipped.max_depth
    assert sorted(quality.pooled_estimator("repurchase", trainings["DE pooled"], settings.pooled)) == [
        f"model.estimator.max_depth={shipped.max_depth}",
        f"model.estimator.max_iter={shipped.max_iter}",
    ]


def test_the_report_puts_a_countrys_three_trainings_side_by_side(quality, settings):
    def entry(training: str, date: str, auc: float) -> dict:
        figures = {population: {"customers": 10.0, "roc_auc": auc} for population in settings.populations}
        return {
            "training": training,
            "model": "repurchase",
            "variant": "default",
            "date": date,
            "validation_for": ["2011-09-09"] if date == "2011-06-09" else [],
            "metrics": {"model": figures, "BG/NBD": figures},
        }

    runs = [
        entry(training, date, auc)
        for training, auc in (("pooled", 0.81), ("DE", 0.79), ("DE pooled", 0.84))
        for date in ("2011-09-09", "2011-06-09")
    ]
    results = {"cutoffs": ["2011-09-09"], "seconds": {"total": 60.0}, "runs": runs}
    results["choices"] = quality.choose_variants(results, [dt.date(2011, 9, 9)])
    results["goals"] = quality.goals(results, settings.goals)
    report = quality.markdown(results, settings)
    section = report[report.index("### Germany: trained on its customers alone, or pooled") :]
    alone, home, everyone = (
        section.index(text)
        for text in (
            "| default | (shipped config) | 0.790 | 0.790 |",
            "`country.training_population=pooled`",
            "| default | (shipped config) | 0.810 | 0.810 |",
        )
    )
    assert alone < home < section.index("| default | (shipped config) | 0.840 | 0.840 |") < everyone


def test_each_experiment_is_the_variant_it_names_and_the_report_shows_what_it_sets(quality, settings):
    """conf/experiment/*.yaml against the overrides the report prints for them: composing either way
    gives the same model, also where a country's model_country file sets the same keys."""
    experiments = [quality.Experiment.load(name) for name in settings.experiments]
    assert {e.variant: list(e.overrides) for e in experiments} == VARIANTS_BEFORE
    depth2 = next(e for e in experiments if e.variant == "depth 2, 50 trees")
    for country, experiment in [*((list(settings.pooled), e) for e in experiments), (["country=FR"], depth2)]:
        by_file = compose_config([*country, "model=repurchase", experiment.override])
        by_overrides = compose_config([*country, "model=repurchase", *experiment.overrides])
        assert OmegaConf.to_container(by_file.model, resolve=True) == OmegaConf.to_container(
            by_overrides.model, resolve=True
        ), experiment
    with pytest.raises(ConfigError, match="no experiment 'deeper'"):
        quality.Experiment.load("deeper")


def test_the_goals_are_judged_as_configured_and_in_the_reports_order(quality, settings):
    cutoffs = ["2011-09-09", "2011-06-09"]

    def entry(model: str, date: str, model_figures: dict, reference: dict | None = None, training="pooled") -> dict:
        return {
            "training": training,
            "model": model,
            "variant": "default",
            "date": date,
            "validation_for": [],
            "metrics": {"model": model_figures, **(reference or {})},
        }

    def paired(name: str, reference: str, estimate: float, low: float, high: float) -> dict:
        key = f"improvement_over_{reference}_{name}"
        return {key: estimate, f"{key}_ci_low": low, f"{key}_ci_high": high}

    runs = [
        entry(
            "repurchase",
            cutoffs[0],
            {"all": {"roc_auc": 0.816, "brier": 0.190, **paired("roc_auc", "BG/NBD", 0.016, 0.004, 0.028)}},
            {"BG/NBD": {"all": {"roc_auc": 0.80, "brier": 0.186}}},
        ),
        entry(
            "repurchase",
            cutoffs[1],
            {"all": {"roc_auc": 0.828, "brier": 0.148, **paired("roc_auc", "BG/NBD", 0.003, -0.004, 0.010)}},
            {"BG/NBD": {"all": {"roc_auc": 0.825, "brier": 0.154}}},
        ),
        entry("ltv_bucket", cutoffs[0], {"all": {"qwk": 0.606}}, {"BG/NBD x GG": {"all": {"qwk": 0.595}}}),
        # Germany alone: an interval of about 90 customers, wide but not below 0
        entry(
            "repurchase",
            cutoffs[0],
            {"Germany": {"roc_auc": 0.79, **paired("roc_auc", "BG/NBD", -0.01, -0.09, 0.07)}},
            training="DE",
        ),
        entry(
            "repurchase",
            cutoffs[1],
            {"Germany": {"roc_auc": 0.70, **paired("roc_auc", "BG/NBD", -0.12, -0.2, -0.04)}},
            training="DE",
        ),
    ]
    results = {
        "cutoffs": cutoffs,
        "runs": runs,
        "choices": {
            training: {
                model: {cutoff: {"chosen": "default"} for cutoff in cutoffs} for model in ("repurchase", "ltv_bucket")
            }
            for training in ("pooled", "DE")
        },
    }
    judged = [(g["goal"], g["value"], g["reference"], g["met"]) for g in quality.goals(results, settings.goals)]
    assert judged == [
        ("repurchase ROC-AUC >= 0.815 at 2011-09-09, all customers", 0.816, 0.815, True),
        (
            "repurchase ROC-AUC significantly above BG/NBD at 2011-09-09 (paired lower 95% bound > 0), all customers",
            0.004,
            0.0,
            True,
        ),
        ("repurchase Brier <= BG/NBD's at 2011-09-09, all customers", 0.190, 0.186, False),
        (
            "repurchase ROC-AUC significantly above BG/NBD at 2011-06-09 (paired lower 95% bound > 0), all customers",
            -0.004,
            0.0,
            False,
        ),
        ("repurchase Brier <= BG/NBD's at 2011-06-09, all customers", 0.148, 0.154, True),
        ("ltv_bucket QWK >= 0.62 at 2011-09-09, all customers", 0.606, 0.62, False),
        ("ltv_bucket QWK >= BG/NBD x GG's at 2011-09-09, all customers", 0.606, 0.595, True),
        (
            "Germany alone: repurchase ROC-AUC not significantly worse than BG/NBD at 2011-09-09 "
            "(paired upper 95% bound >= 0)",
            0.07,
            0.0,
            True,
        ),
        # no ltv_bucket figures for Germany alone: left out
        (
            "Germany alone: repurchase ROC-AUC not significantly worse than BG/NBD at 2011-06-09 "
            "(paired upper 95% bound >= 0)",
            -0.04,
            0.0,
            False,
        ),
    ]


def test_calibration_is_chosen_by_brier_on_validation_only_where_the_shipped_config_wins(quality):
    def entry(variant: str, auc: float, brier: float, choose_by: str | None = None) -> dict:
        return {
            **_entry(variant, "2011-06-09", auc, ["2011-09-09"]),
            "choose_by": choose_by,
            "metrics": {"model": {"all": {"roc_auc": auc, "brier": brier}}},
        }

    calibrations = [entry("isotonic", 0.79, 0.150, "brier"), entry("sigmoid", 0.80, 0.160, "brier")]
    # calibrated variants score lower on the headline, but they are not judged on it
    shipped_wins = {"runs": [entry("default", 0.83, 0.170), entry("deep", 0.82, 0.140), *calibrations]}
    choice = quality.choose_variants(shipped_wins, [dt.date(2011, 9, 9)])["pooled"]["repurchase"]["2011-09-09"]
    assert choice["validation"] == {"default": 0.83, "deep": 0.82}
    assert choice["validation_by"] == {"brier": {"default": 0.170, "isotonic": 0.150, "sigmoid": 0.160}}
    assert choice["chosen"] == "isotonic"
    # no calibration beats the shipped probabilities: none is adopted
    worse = {"runs": [entry("default", 0.83, 0.140), *calibrations]}
    assert quality.choose_variants(worse, [dt.date(2011, 9, 9)])["pooled"]["repurchase"]["2011-09-09"]["chosen"] == (
        "default"
    )
    # another variant wins the headline: the calibrations of the shipped config do not apply to it
    other = {"runs": [entry("default", 0.81, 0.170), entry("deep", 0.82, 0.175), *calibrations]}
    chosen = quality.choose_variants(other, [dt.date(2011, 9, 9)])["pooled"]["repurchase"]["2011-09-09"]
    assert chosen["chosen"] == "deep" and "validation_by" not in chosen


def test_the_models_paired_improvement_over_the_baseline_is_reported(quality, settings):
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 2, n)
    baseline = y * 0.3 + rng.random(n) * 0.7
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "country": np.where(np.arange(n) < 200, "United Kingdom", "Germany"),
            "y": y,
            "model": np.clip(baseline + (y - 0.5) * 0.3, 0, 1),
            "BG/NBD": baseline,
        }
    )
    scored = quality.Scored("repurchase", "default", "2011-09-09", frame)
    metrics = quality.ModelMetrics.of(compose_config(["model=repurchase"]))
    figures = quality.population_metrics(
        scored, "model", metrics, settings.populations, resamples=50, seed=1, paired={"BG/NBD": ["roc_auc", "brier"]}
    )
    germany = figures["Germany"]
    rows = frame["country"] == "Germany"
    expected = roc_auc_score(y[rows], frame["model"][rows]) - roc_auc_score(y[rows], baseline[rows])
    assert germany["improvement_over_BG/NBD_roc_auc"] == pytest.approx(expected)
    low, high = germany["improvement_over_BG/NBD_roc_auc_ci_low"], germany["improvement_over_BG/NBD_roc_auc_ci_high"]
    assert low <= expected <= high
    table = "\n".join(quality.population_table({"metrics": {"model": figures}}, metrics, ["Germany"]))
    assert "paired improvement: brier over BG/NBD" in table and "paired improvement: roc_auc over BG/NBD" in table
    assert f"{expected:+.3f} [{low:+.3f}, {high:+.3f}]" in table


def test_the_command_lines_pipeline_overrides_reach_every_run_and_the_studys_choices_stay_its_own():
    assert pipeline_overrides(
        ["quality.data=x.csv.gz", "seed=7", "+quality.note=a", "env.spark.conf.k=v"], "quality"
    ) == ["seed=7", "env.spark.conf.k=v"]
    for choice in ("model=ltv_bucket", "country=FR", "+experiment=snapshot_month"):
        with pytest.raises(ConfigError, match="chooses"):
            pipeline_overrides([choice], "quality")


def test_a_study_needs_its_data_or_earlier_results_but_not_both(quality, tmp_path):
    doc = f"quality.doc={tmp_path / 'report.md'}"
    with pytest.raises(ConfigError, match="quality.data is not set"):
        quality.study(compose_config(config_name="quality", overrides=[doc]))
    with pytest.raises(ConfigError, match="both set"):
        quality.study(
            compose_config(
                config_name="quality", overrides=[doc, "quality.data=x.csv.gz", "quality.report_from=[x.json]"]
            )
        )
    assert not (tmp_path / "report.md").exists()


def test_calibration_is_reported_bin_by_bin_for_the_chosen_variant_the_baseline_and_the_calibrations(quality):
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)  # calibrated by construction
    bins = quality.reliability(y, p, bins=5)
    assert [b["customers"] for b in bins] == [200.0] * 5
    assert [b["predicted"] for b in bins] == sorted(b["predicted"] for b in bins)
    assert all(abs(b["predicted"] - b["realised"]) < 0.1 for b in bins)
    assert quality.reliability(y, np.full(1000, 0.5), bins=5)[0]["predicted"] == 0.5

    def run(variant: str, choose_by: str | None, shift: float) -> dict:
        return {
            "training": "pooled",
            "model": "repurchase",
            "variant": variant,
            "date": "2011-09-09",
            "choose_by": choose_by,
            "reliability": {
                "model": quality.reliability(y, np.clip(p + shift, 0, 1), bins=5),
                "BG/NBD": quality.reliability(y, p, bins=5),
            },
        }

    shipped, isotonic = run("default", None, 0.2), run("calibrated (isotonic)", "brier", 0.0)
    table = quality.reliability_table({"runs": [shipped, isotonic]}, shipped, "repurchase", "2011-09-09")
    assert table[2] == "| bin | default | BG/NBD | calibrated (isotonic) |"
    first = table[4].split(" | ")
    assert first[0] == "| 1" and len(first) == 4
    assert table[-2].startswith("| 5 | ") and table[-1] == ""
