# Tessera task runner. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TESSERA_TEST_DB ?= sqlite
PYTEST_WORKERS ?= 2

.PHONY: demo test test-fast lint fmt migrate bench vendor screenshots services clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tessera demo

test: $(STAMP)
	TESSERA_TEST_DB=$(TESSERA_TEST_DB) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-fast: $(STAMP)
	TESSERA_TEST_DB=$(TESSERA_TEST_DB) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -q -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

migrate: $(STAMP)
	$(BIN)/tessera migrate

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

vendor:
	scripts/vendor.sh

screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

services:
	@scripts/services.sh start

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
