"""Stage `batch_inference` as a spark_python_task: `python scripts/batch_inference.py model=repurchase country=DE [inference.date=2011-12-09]`."""

import hydra
from omegaconf import DictConfig

from mlops.cli import run_stage
from mlops.redact import redacted_output


@redacted_output()
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage("batch_inference", cfg)


if __name__ == "__main__":
    main()
