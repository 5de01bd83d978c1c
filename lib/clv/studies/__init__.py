"""Studies of the CLV models and pipeline, run by people rather than by jobs: model quality on the real
data (`python -m clv.studies.model_quality`, docs/model_quality.md) and the data stages' speed at growing
sizes (`python -m clv.studies.benchmark`, docs/performance.md).

Each study is a Hydra app with its own primary config, conf/quality.yaml or conf/benchmark.yaml, which
starts from the pipeline's conf/config.yaml (`defaults: [config, ...]`) and adds one section of the
study's settings (`quality:`, `benchmark:`). A primary config rather than a group of config.yaml: the
stage scripts' config stays what it is, while the study inherits the pipeline's Hydra settings (logging
to stderr, nothing written to the working directory) and its `--cfg job` shows the study's settings next
to the pipeline config every run starts from.

A study makes many pipeline runs (per model, country, cutoff, variant or dataset), each composed
afresh from conf/config.yaml with the study's own overrides. The command line's overrides outside the
study's section are passed on to every run (`pipeline_overrides`), so that `seed=7` or a Spark setting
means the same as on a stage script; model, country and experiment are what the study varies itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from clv.studies.schema import register
from mlops.errors import ConfigError

register()  # the studies' primary configs start from these schemas

# the config groups a study chooses for each run it makes; a command-line choice would be overridden
STUDY_GROUPS = ("model", "country", "experiment")


def command_line_overrides() -> list[str]:
    """The running Hydra app's overrides as typed (hydra.* ones aside)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def pipeline_overrides(overrides: Sequence[str], section: str) -> list[str]:
    """The overrides meant for the pipeline config, to repeat on each run a study makes: all but the
    study's own section. A choice of a group the study varies is refused, not silently lost."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == section or key.startswith(section + "."):
            continue
        if key in STUDY_GROUPS:
            raise ConfigError(
                f"{override!r}: the study chooses {key} for each run itself",
                where="the command line",
                fix=f"choose with the {section}.* settings (--help lists them)",
            )
        kept.append(override)
    return kept
