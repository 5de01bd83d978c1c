# `make train` and `make test` create the virtual environment on first use.
# python3.11 or python3.12, whichever exists (3.11 first); override with PYTHON=/path/to/python
PYTHON ?= $(or $(shell command -v python3.11 2>/dev/null),$(shell command -v python3.12 2>/dev/null),$(error neither python3.11 nor python3.12 is on PATH: install one, or pass PYTHON=/path/to/python))
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# extra pytest arguments for `make unit` / `make integration`, e.g. PYTEST_ARGS="--junitxml=unit.xml"
PYTEST_ARGS ?=

.PHONY: install lint train pipeline ui test unit integration benchmark quality clean bundle-validate bundle-deploy bundle-run

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python scripts/train.py model=repurchase country=DE

pipeline: $(STAMP)
	$(BIN)/python scripts/run_pipeline.py model=repurchase country=DE

# the MLflow UI on the local runs, registry and artifacts: loopback only, one worker, and without
# MLflow's job runner (seven huey consumers for server-side jobs this project never submits).
# STORE is the env's storage_root (the default env=local writes .local); PORT=5001 if 5000 is taken
STORE ?= .local
PORT ?= 5000
ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(STORE))/mlflow/mlflow.db --host 127.0.0.1 --port $(PORT) --workers 1

# two xdist workers, one Spark session each; a module stays whole on one worker (scenario modules run in
# order), and the modules reading the shared DE pipelines share one (tests/conftest.py)
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

# lint, format and types (pyproject.toml), and resources/ as conf/ generates it; the same as the
# pre-commit hooks. `ruff check --fix . && ruff format .` repairs most of what it reports.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m mlops.bundle --check

# the fast loop while working: the unit tests on the same two workers as `make test`
unit: $(STAMP)
	$(BIN)/python -m pytest tests -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest integration_tests -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

# the data stages at 100k/1M/10M synthetic lines against a pandas reference (docs/performance.md);
# BENCHMARK_ARGS takes Hydra overrides of conf/benchmark.yaml, e.g.
# BENCHMARK_ARGS="benchmark.real=/path/to/online_retail_2009_2011_combined.csv.gz" adds the real file
BENCHMARK_ARGS ?=
benchmark: $(STAMP)
	$(BIN)/python -m clv.studies.benchmark $(BENCHMARK_ARGS)

# both models out of time on the full Online Retail II file against BG/NBD (docs/model_quality.md), e.g.
# make quality DATA=../shared/data/online_retail_2009_2011_combined.csv.gz
# QUALITY_ARGS takes Hydra overrides of conf/quality.yaml, e.g. QUALITY_ARGS="quality.models=[repurchase]"
quality: $(STAMP)
	$(if $(DATA),,$(error DATA is required: the Online Retail II csv.gz, all countries))
	$(BIN)/python -m clv.studies.model_quality quality.data=$(DATA) $(QUALITY_ARGS)

clean:
	rm -rf .local

# Databricks Asset Bundle commands, the same from a terminal and from Azure DevOps. They need only
# the Databricks CLI (no venv) and credentials from the environment or a CLI profile.
# TARGET has no default on purpose: a forgotten TARGET must fail, not deploy somewhere.
#   make bundle-validate TARGET=staging
#   make bundle-deploy TARGET=staging
#   make bundle-run TARGET=test JOB=clv_model_training_job PARAMS=model=repurchase,country=DE
bundle-validate:
	$(if $(TARGET),,$(error TARGET is required, e.g. make bundle-validate TARGET=dev))
	databricks bundle validate -t $(TARGET)

bundle-deploy:
	$(if $(TARGET),,$(error TARGET is required, e.g. make bundle-deploy TARGET=dev))
	databricks bundle deploy -t $(TARGET)

bundle-run:
	$(if $(TARGET),,$(error TARGET is required, e.g. make bundle-run TARGET=dev JOB=clv_model_training_job))
	$(if $(JOB),,$(error JOB is required: a job key from resources/*.yml, e.g. JOB=clv_model_training_job))
	databricks bundle run -t $(TARGET) $(JOB)$(if $(PARAMS), --params "$(PARAMS)")
