"""Train -> evaluate -> registry on the bundled DE sample: the gate, aliases, reruns, crashes, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from omegaconf import open_dict

from integration_tests.conftest import local_config
from mlops import registry
from mlops.cli import run_stage, run_stages
from mlops.errors import ConfigError, GateRejectedError
from mlops.registry import alias_version, model_versions
from mlops.runtime import RunContext

pytestmark = pytest.mark.integration

CRIPPLED = {"_target_": "sklearn.dummy.DummyClassifier", "strategy": "prior"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gate")


def context(root: Path, spark, *overrides: str, estimator: dict | None = None) -> RunContext:
    cfg = local_config(root, "country=DE", "env.sample_fraction=1.0", *overrides)
    if estimator is not None:
        with open_dict(cfg):
            cfg.model.estimator = estimator
    return RunContext.from_config(cfg, spark=spark)


def run(ctx: RunContext, *stages: str):
    return {result.stage: result for result in run_stages(list(stages), ctx.cfg, ctx)}


def champion_version(ctx: RunContext) -> str | None:
    version = alias_version(registry.registered_model_name(ctx.cfg), "champion")
    return None if version is None else str(version.version)


def challenger_version(ctx: RunContext) -> str | None:
    version = alias_version(registry.registered_model_name(ctx.cfg), "challenger")
    return None if version is None else str(version.version)


def aliases_of(ctx: RunContext, version: str) -> list[str]:
    """What the version holds, read from the registry (search results carry no aliases on UC)."""
    return sorted(mlflow.MlflowClient().get_model_version(registry.registered_model_name(ctx.cfg), version).aliases)


def versions(ctx: RunContext) -> list[str]:
    return sorted((str(v.version) for v in model_versions(registry.registered_model_name(ctx.cfg))), key=int)


@pytest.fixture(scope="module")
def first(root, spark):
    ctx = context(root, spark, "model=repurchase")
    results = run(ctx, "extract", "features", "split", "train", "evaluate")
    return ctx, results


def test_a_good_first_model_becomes_champion(first):
    ctx, results = first
    evaluation = results["evaluate"]
    assert evaluation.details["verdict"]["passed"] and evaluation.details["aliases_set"] == ["challenger", "champion"]
    assert champion_version(ctx) == evaluation.details["version"] == "1"
    # MLOps Stacks' rule: the version that became champion is no challenger any more
    assert evaluation.details["aliases"] == aliases_of(ctx, "1") == ["champion"]
    assert evaluation.details["challenger_removed"] and challenger_version(ctx) is None
    name = registry.registered_model_name(ctx.cfg)
    assert name == "local.clv.clv_repurchase_de"
    version = mlflow.MlflowClient().get_model_version(name, "1")
    assert version.tags["gate.verdict"] == "passed" and "## Gate" in version.description
    # the model and the numbers a person looks at are in the evaluation run
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(evaluation.run_id, "evaluation")}
    assert {
        "evaluation/model_card.md",
        "evaluation/roc_curve.png",
        "evaluation/pr_curve.png",
        "evaluation/calibration_curve.png",
        "evaluation/permutation_importance.png",
        "evaluation/verdict.json",
        "evaluation/metrics.json",
        "evaluation/baseline_fits.json",
    } <= artifacts
    # the baseline is fitted per test snapshot on that snapshot's customers, each once
    fits = mlflow.artifacts.load_dict(f"runs:/{evaluation.run_id}/evaluation/baseline_fits.json")
    test = ctx.read("test").toPandas()
    snapshot = ctx.cfg.use_case.key_columns[1]
    assert sorted(fits) == sorted(str(day) for day in test[snapshot].unique())
    known = ctx.read("features").groupBy(snapshot).count().toPandas()
    split_rows = ctx.read("train").unionByName(ctx.read("test")).groupBy(snapshot).count().toPandas()
    for day, fit in fits.items():
        customers = int(split_rows.loc[split_rows[snapshot].astype(str) == day, "count"].iloc[0])
        assert fit["customers"] == customers <= int(known.loc[known[snapshot].astype(str) == day, "count"].iloc[0])
    params = mlflow.get_run(evaluation.run_id).data.params
    assert int(params["baseline.snapshots"]) == len(fits)
    # the gate's baseline check is the paired rule, and the card shows every paired difference
    check = next(c for c in evaluation.details["verdict"]["checks"] if c["name"] == "baseline.roc_auc")
    improvement = evaluation.metrics["improvement_over_baseline_roc_auc"]
    assert check["passed"] and check["detail"].startswith(f"roc_auc improvement over baseline {improvement:+.4f} [")
    assert check["detail"].endswith("high end must be >= 0 (not significantly worse)")
    assert check["value"] == evaluation.metrics["improvement_over_baseline_roc_auc_ci_high"] >= 0
    card = mlflow.artifacts.load_text(f"runs:/{evaluation.run_id}/evaluation/model_card.md")
    assert "## Paired improvement" in card and f"| roc_auc | {improvement:+.4f} [" in card
    metrics = evaluation.metrics
    assert metrics["candidate_roc_auc_ci_low"] <= metrics["candidate_roc_auc"] <= metrics["candidate_roc_auc_ci_high"]
    assert 0.5 < metrics["baseline_roc_auc"] < 1.0
    print("\nrepurchase DE:", json.dumps({k: round(v, 3) for k, v in metrics.items()}, sort_keys=True))


def test_rerunning_evaluate_on_the_same_run_adds_no_version(first, spark, root):
    ctx, _ = first
    again = run(context(root, spark, "model=repurchase"), "evaluate")["evaluate"]
    assert again.details["version"] == "1" and versions(ctx) == ["1"] and champion_version(ctx) == "1"
    assert again.details["aliases"] == aliases_of(ctx, "1") == ["champion"]


def test_a_crippled_model_is_rejected_and_the_champion_stays(first, spark, root):
    ctx, _ = first
    crippled = context(root, spark, "model=repurchase", estimator=CRIPPLED)
    run(crippled, "train")
    with pytest.raises(GateRejectedError) as caught:
        run(crippled, "evaluate")
    assert "roc_auc=0.5000 must be >= 0.6" in caught.value.message
    # a constant score is measurably worse than BG/NBD on these customers: the paired rule says so too
    assert "roc_auc improvement over baseline -" in caught.value.message
    assert versions(ctx) == ["1"] and champion_version(ctx) == "1"

    # dry_run: registered with its failed verdict on record, no alias moves, no error
    dry = run(context(root, spark, "model=repurchase", "evaluation.run_mode=dry_run", estimator=CRIPPLED), "evaluate")[
        "evaluate"
    ]
    assert not dry.details["verdict"]["passed"] and dry.details["aliases"] == []
    assert versions(ctx) == ["1", "2"] and champion_version(ctx) == "1"
    assert (
        mlflow.MlflowClient().get_model_version(ctx.cfg.use_case.registered_model, "2").tags["gate.verdict"] == "failed"
    )


def test_a_crash_before_promotion_leaves_the_champion_and_a_rerun_finishes(first, spark, root, monkeypatch):
    ctx, _ = first
    better = context(root, spark, "model=repurchase", "seed=7", "model.gate.versus_champion.min=-1.0")
    run(better, "train")

    def crash_on_champion(name, alias, version):
        if alias == "champion":
            raise RuntimeError("registry went away")
        original(name, alias, version)

    original = registry.set_alias
    # in mlops.registry, where promote_to_champion sets champion; evaluate sets challenger itself
    monkeypatch.setattr(registry, "set_alias", crash_on_champion)
    with pytest.raises(RuntimeError, match="registry went away"):
        run(better, "evaluate")
    # the candidate got challenger, champion was never reached: the old champion serves
    assert champion_version(ctx) == "1" and challenger_version(ctx) == "3"
    monkeypatch.undo()

    finished = run(better, "evaluate")["evaluate"]
    assert finished.details["version"] == "3" and versions(ctx) == ["1", "2", "3"]
    assert champion_version(ctx) == "3" and finished.details["challenger_removed"]
    assert aliases_of(ctx, "3") == ["champion"] and challenger_version(ctx) is None


def test_promote_rolls_back_and_refuses_unknown_versions(first, spark, root):
    ctx, _ = first
    rollback = run(context(root, spark, "model=repurchase", "promote.version=1"), "promote")["promote"]
    assert rollback.details["previous"] == "3" and champion_version(ctx) == "1"
    assert not rollback.details["challenger_removed"] and aliases_of(ctx, "1") == ["champion"]
    with pytest.raises(ConfigError, match="has no version 99"):
        run(context(root, spark, "model=repurchase", "promote.version=99"), "promote")
    with pytest.raises(ConfigError, match="promote.version"):
        run(context(root, spark, "model=repurchase"), "promote")


def test_a_passing_candidate_that_does_not_beat_the_champion_is_only_challenger(first, spark, root):
    ctx, _ = first
    champion_before = champion_version(ctx)
    modest = context(root, spark, "model=repurchase", "seed=11", "model.gate.versus_champion.min=1.0")
    results = run(modest, "train", "evaluate")
    evaluation = results["evaluate"]
    assert evaluation.details["verdict"]["passed"] and evaluation.details["aliases"] == ["challenger"]
    assert champion_version(ctx) == champion_before
    challenger = alias_version(registry.registered_model_name(ctx.cfg), "challenger")
    assert str(challenger.version) == evaluation.details["version"] != champion_before
    assert evaluation.details["aliases"] == ["challenger"] and not evaluation.details["challenger_removed"]


def test_promote_takes_challenger_off_the_version_it_makes_champion(first, spark, root):
    """scripts/promote.py on the challenger's version: champion moves there, challenger is deleted.
    Then back the way it was (champion rollback, challenger moved by promote.alias=challenger)."""
    ctx, _ = first
    champion_before, challenger = champion_version(ctx), challenger_version(ctx)
    assert challenger is not None and challenger != champion_before

    promoted = run(context(root, spark, "model=repurchase", f"promote.version={challenger}"), "promote")["promote"]
    assert promoted.details["challenger_removed"] and promoted.details["previous"] == champion_before
    assert champion_version(ctx) == challenger and challenger_version(ctx) is None
    assert aliases_of(ctx, challenger) == ["champion"]

    back = run(context(root, spark, "model=repurchase", f"promote.version={champion_before}"), "promote")["promote"]
    assert not back.details["challenger_removed"]
    again = run(
        context(root, spark, "model=repurchase", f"promote.version={challenger}", "promote.alias=challenger"), "promote"
    )["promote"]
    assert again.details["previous"] is None and not again.details["challenger_removed"]
    assert (champion_version(ctx), challenger_version(ctx)) == (champion_before, challenger)
    assert aliases_of(ctx, challenger) == ["challenger"] and aliases_of(ctx, champion_before) == ["champion"]


def test_the_champion_is_never_made_challenger_too(first, spark, root):
    """One version never holds both aliases (the README's rule): promote.alias=challenger on the
    champion is refused with the reason, and neither alias moves."""
    ctx, _ = first
    champion, challenger = champion_version(ctx), challenger_version(ctx)
    assert champion is not None
    with pytest.raises(ConfigError, match=f"version {champion} is the champion") as raised:
        run(
            context(root, spark, "model=repurchase", f"promote.version={champion}", "promote.alias=challenger"),
            "promote",
        )
    assert raised.value.where == "promote.alias" and "promote.alias=champion" in raised.value.fix
    assert (champion_version(ctx), challenger_version(ctx)) == (champion, challenger)
    assert aliases_of(ctx, champion) == ["champion"]


def test_custom_gate_metrics_come_from_config(first, spark, root):
    ctx, _ = first
    demanding = context(root, spark, "model=repurchase")
    with open_dict(demanding.cfg):
        demanding.cfg.evaluation.custom_metrics = [
            {"name": "lift_at_20", "fn": {"_target_": "mlops.metrics.lift_at", "fraction": 0.2}, "min": 100.0}
        ]
    before = (versions(ctx), champion_version(ctx), challenger_version(ctx))
    with pytest.raises(GateRejectedError, match=r"lift_at_20=\d+\.\d+ must be >= 100.0"):
        run(demanding, "evaluate")
    assert (versions(ctx), champion_version(ctx), challenger_version(ctx)) == before


def test_ltv_bucket_trains_and_passes_the_gate(first, de_pipelines):
    """The session's shared ltv_bucket run (integration_tests/conftest.py), read, not re-run."""
    run = de_pipelines["ltv_bucket"]
    ltv, evaluation = run["ctx"], run["results"]["evaluate"]
    try:
        registry.configure_mlflow(ltv.cfg)  # that run's registry; MLflow's URI is process-wide
        assert evaluation.details["verdict"]["passed"], evaluation.details["verdict"]["reasons"]
        assert champion_version(ltv) == evaluation.details["version"] == "1"
        target = registry.load_run_json(run["results"]["train"].run_id, "config/target.json")
        assert len(target["edges"]) == 2 and len(target["class_shares"]) == 4
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(evaluation.run_id, "evaluation")}
        assert "evaluation/confusion_matrix.png" in artifacts
    finally:
        registry.configure_mlflow(first[0].cfg)  # the next tests read this module's world
    print("\nltv_bucket DE:", json.dumps({k: round(v, 3) for k, v in evaluation.metrics.items()}, sort_keys=True))


def test_a_rejection_exits_7_from_the_scripts_entry_point(first, root, spark, caplog):
    """run_stage is what every script calls (the exit-code path through Hydra's main is exercised
    by the bad-input matrix in integration_tests/test_bad_input.py)."""
    ctx = context(root, spark, "model=repurchase", estimator=CRIPPLED)
    before = (versions(ctx), champion_version(ctx))
    with pytest.raises(SystemExit) as exited:
        run_stage(["train", "evaluate"], ctx.cfg)
    assert exited.value.code == GateRejectedError.exit_code == 7
    assert "failed the gate" in caplog.text
    assert (versions(ctx), champion_version(ctx)) == before, "a rejected candidate is not registered"
