# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/storyline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

run: $(BIN)/storyline
	$(BIN)/storyline --config $(CONFIG) init
	$(BIN)/storyline --config $(CONFIG) run

lint: $(BIN)/storyline
	$(BIN)/ruff check daemon adapters storage tests bench
	$(BIN)/ruff format --check daemon adapters storage tests bench

typecheck: $(BIN)/storyline
	$(BIN)/mypy

pytest: $(BIN)/storyline
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(BIN)/storyline
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
