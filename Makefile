# Every target creates the virtual environment it needs (.venv), so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= seed
DATA ?= ../shared/data/svhn-hw2
CHECKPOINT ?= runs/latest/best
OUT ?= out/eval
SPLIT ?= valid
PYTEST_ARGS ?=

.PHONY: help venv test test-fast lint format train evaluate synth bench serve clean

help:
	@echo "make serve | test | lint | train CONFIG=.. DATA=.. | evaluate CHECKPOINT=.. DATA=.. | synth | bench"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision are pinned in pyproject.toml; the pin keeps pip off the broken 2.13.0+cpu wheel.
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check models training service tests benchmarks
	$(PY) -m ruff format --check models training service tests benchmarks
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format models training service tests benchmarks
	$(PY) -m ruff check --fix models training service tests benchmarks

train: $(STAMP)
	$(PY) -m training.train --config $(CONFIG) --data $(DATA)

evaluate: $(STAMP)
	$(PY) -m training.evaluate --checkpoint $(CHECKPOINT) --data $(DATA) --split $(SPLIT) --out $(OUT)

synth: $(STAMP)
	$(PY) -m training.synth --out data/synth --count 2000

bench: $(STAMP)
	$(PY) benchmarks/bench_training.py

serve: $(STAMP)
	@echo "The HTTP service arrives with the service issue (#3); nothing to serve yet." >&2
	@exit 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
