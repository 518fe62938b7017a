# Two entry points (see README.md): `make run` starts the service, `make test` runs every check.
# Both create .venv on first use. torch is pinned to the CPU wheel: a bare `torch` requirement pulls CUDA.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: run test lint typecheck pytest install bench node-wheel clean

$(BIN)/commons: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/commons

install: $(BIN)/commons

run: install
	$(BIN)/commons serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/votes.py

# the node package (docs/federation.md, "Setting up a node"): dist/commons_node-<version>-py3-none-any.whl
node-wheel: install
	$(BIN)/python node/build.py --out dist

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
