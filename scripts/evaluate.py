"""Stage `evaluate` as a spark_python_task: `python scripts/evaluate.py model=repurchase country=DE [env=dev]`."""

import hydra
from omegaconf import DictConfig

from mlops.cli import run_stage
from mlops.redact import redacted_output


@redacted_output()
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage("evaluate", cfg)


if __name__ == "__main__":
    main()
