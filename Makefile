# `make train` and `make test` create the virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train pipeline test unit clean

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

test: $(STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf .local
