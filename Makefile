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
# DVC stages call `blurdm-bench`: put the venv first on PATH for every recipe.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro smoke rehearse test bench check-paper-costs gpu-check clean-venv

install: $(STAMP)

# torch first, from the pinned CPU wheel; then everything else under the same constraints,
# so nothing can pull another torch (or CUDA packages).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -c "import pipelines.core.environment as c; c.import_torchvision(); print('install ok')"
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

# CI's pipeline check: every stage family of the DAG on the smoke profile, then the metric tables against
# the committed reference (reports/reference/smoke). `dvc exp run -S profile=smoke` composes params.yaml for the
# smoke profile (pipelines/conf/profile/smoke.yaml: Table 1 on the ablation backbone, MIMO-UNet, a few steps).
smoke: $(STAMP)
	$(BIN)/dvc exp run -S profile=smoke
	$(BIN)/blurdm-bench check --profile smoke

# The paper profile rehearsed end to end on a CPU (README "Rehearsal of the paper profile"): miniature GoPro / HIDE /
# RealBlur archives in the official layouts served on 127.0.0.1, `dvc exp run -S profile=paper` with only sizes,
# layout and the download source overridden, in a copy of the working tree (rehearsal/, git-ignored), then its
# outcome checked (every stage, the four Table-1 columns, the ablations on GoPro, the report). Exit 1 on a failure.
rehearse: $(STAMP)
	$(BIN)/blurdm-bench rehearse

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m pytest -q bench --benchmark-only --benchmark-json=bench/results.json

clean-venv:
	rm -rf $(VENV)

# Paper-scale parameter / MAC counts of every backbone, fusion layer and the BlurDM module against the
# published ones (counted on the meta device: seconds, no GPU).
check-paper-costs: $(STAMP)
	$(BIN)/python -m pytest -q -k "paper" tests/test_backbones_mimo_stripformer.py tests/test_backbones_fft_loformer.py tests/test_profile.py tests/test_encoder.py tests/test_diffusion.py

# On a GPU machine (CUDA build of torch, README "GPU users"): one short training burst per backbone and stage
# at the paper batch with the paper profile's precision / checkpointing / micro-batches, then the eager and
# CUDA-graph latency table; under 10 minutes; writes metrics/gpu_check.json (untracked). Fails at once on a CPU.
gpu-check: $(STAMP)
	$(BIN)/python -m pipelines.cli gpu-check --out metrics/gpu_check.json
