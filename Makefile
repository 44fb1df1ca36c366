# Two commands for a fresh machine: `make repro` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0

.PHONY: install repro test bench check-paper-costs clean-venv

install: $(STAMP)

# torch first, from the pinned CPU wheel; then everything else under the same constraints,
# so nothing can pull another torch (or CUDA packages).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -c "import pipelines.compat as c; c.import_torchvision(); print('install ok')"
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m pytest -q bench --benchmark-only --benchmark-json=bench/results.json

clean-venv:
	rm -rf $(VENV)
