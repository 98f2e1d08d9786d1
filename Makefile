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

COMPOSE_SCHEMA := $(VENV)/compose_spec.json
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv browser test test-fast lint lint-container format train evaluate synth bench bench-service serve clean

help:
	@echo "make serve | test | lint | train CONFIG=.. DATA=.. | evaluate CHECKPOINT=.. DATA=.. | synth | bench"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision are pinned in pyproject.toml; the pin keeps pip off the broken 2.13.0+cpu wheel.
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the page's browser test. Best effort: without root/apt the test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "could not install chromium: the browser test will be skipped"; \
	else echo "no chromium and no root apt-get: the browser test will be skipped"; fi

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check models training service tests benchmarks docs
	$(PY) -m ruff format --check models training service tests benchmarks docs
	$(PY) -m mypy
	$(MAKE) lint-container

# No Docker engine here: hadolint checks the Dockerfile, and the compose file is validated against the
# Compose specification's JSON schema (shipped inside the docker-compose 1.29.2 wheel).
lint-container: $(STAMP) $(COMPOSE_SCHEMA)
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/check-jsonschema --schemafile $(COMPOSE_SCHEMA) docker-compose.yml

$(COMPOSE_SCHEMA): $(STAMP)
	rm -rf $(VENV)/compose-wheel
	$(PY) -m pip download --quiet --no-deps --dest $(VENV)/compose-wheel docker-compose==1.29.2
	$(PY) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('compose/config/compose_spec.json'))" $(VENV)/compose-wheel/*.whl $@

format: $(STAMP)
	$(PY) -m ruff format models training service tests benchmarks docs
	$(PY) -m ruff check --fix models training service tests benchmarks docs

train: $(STAMP)
	$(PY) -m training.train --config $(CONFIG) --data $(DATA)

evaluate: $(STAMP)
	$(PY) -m training.evaluate --checkpoint $(CHECKPOINT) --data $(DATA) --split $(SPLIT) --out $(OUT)

synth: $(STAMP)
	$(PY) -m training.synth --out data/synth --count 2000

bench: $(STAMP)
	$(PY) benchmarks/bench_training.py

# Two glibc malloc arenas, as in the Dockerfile: less resident memory, no slower (docs/benchmarks.md).
serve: $(STAMP)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/uvicorn --factory service.app:create_app --host $(HOST) --port $(PORT) --timeout-graceful-shutdown 25 --no-access-log

bench-service: $(STAMP)
	$(PY) benchmarks/bench_service.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
