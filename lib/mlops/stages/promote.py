"""Stage promote: point `champion` (or `challenger`) at a registered version: rollback or manual promotion.

`champion` goes through `promote_to_champion`: a version that becomes champion loses its
`challenger` alias (MLOps Stacks' deployment rule); `challenger` is moved, but never onto the
champion's version: one version holds one alias.
"""

from __future__ import annotations

import logging

from mlops.errors import ConfigError
from mlops.registry import (
    alias_version,
    configure_mlflow,
    model_versions,
    promote_to_champion,
    registered_model_name,
    set_alias,
)
from mlops.runtime import RunContext, StageResult

log = logging.getLogger(__name__)


def promote(ctx: RunContext) -> StageResult:
    import mlflow

    cfg = ctx.cfg
    if cfg.promote.version is None:
        raise ConfigError(
            "which version to promote is not given",
            where="promote.version",
            fix="e.g. python scripts/promote.py model=repurchase country=DE promote.version=3",
        )
    wanted = str(cfg.promote.version)
    alias = str(cfg.promote.alias)
    if alias not in ("champion", "challenger"):
        raise ConfigError(f"promote.alias={alias!r}", where="promote.alias", fix="champion or challenger")
    configure_mlflow(cfg)
    name = registered_model_name(cfg)
    versions = {str(v.version): v for v in model_versions(name)}
    if wanted not in versions:
        raise ConfigError(
            f"{name} has no version {wanted}",
            where="promote.version",
            fix=f"one of {sorted(versions, key=int) or 'none: run evaluate first'}",
        )
    version = versions[wanted]
    tags = mlflow.get_run(version.run_id).data.tags if version.run_id else {}
    if (tags.get("model"), tags.get("country")) != (cfg.model.name, cfg.country.code):
        raise ConfigError(
            f"{name} version {wanted} was trained as {tags.get('model')} for {tags.get('country')}",
            where="promote.version",
            fix="promote a version of this model and country",
        )
    previous = alias_version(name, alias)
    if alias == "challenger":
        champion = alias_version(name, "champion")
        if champion is not None and str(champion.version) == wanted:
            # a challenger is a candidate against the champion: on the champion itself it would
            # leave one version holding both aliases and the next gate comparing it with itself
            raise ConfigError(
                f"{name} version {wanted} is the champion; a version holds one alias, so it cannot also be challenger",
                where="promote.alias",
                fix="name another version for challenger, or to roll the champion back use "
                "promote.alias=champion promote.version=<the version to serve>",
            )
    challenger_removed = False
    if alias == "champion":
        challenger_removed = promote_to_champion(name, wanted)
    else:
        set_alias(name, alias, wanted)
    log.info(
        "%s@%s: version %s -> %s%s",
        name,
        alias,
        None if previous is None else previous.version,
        wanted,
        "; its challenger alias removed" if challenger_removed else "",
    )
    return StageResult(
        stage="promote",
        details={
            "alias": alias,
            "version": wanted,
            "previous": None if previous is None else str(previous.version),
            "challenger_removed": challenger_removed,
        },
    )
