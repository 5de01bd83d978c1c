"""Point `champion` at a version (rollback): `python scripts/promote.py model=repurchase country=DE promote.version=3`."""

import hydra
from omegaconf import DictConfig

from mlops.cli import run_stage
from mlops.redact import redacted_output


@redacted_output()
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage("promote", cfg)


if __name__ == "__main__":
    main()
