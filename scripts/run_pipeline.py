"""All stages in one process and one Spark session: `python scripts/run_pipeline.py country=FR`."""

import hydra
from omegaconf import DictConfig

from mlops.cli import run_stage
from mlops.redact import redacted_output


@redacted_output()
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(list(cfg.pipeline.stages), cfg)


if __name__ == "__main__":
    main()
