# banktasks: `make demo` runs the main job end to end; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint format typecheck bench readme clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# what pip does for an installed package (not for an editable one): bytecode ahead of
	# time, so a process does not compile the project at start-up (with PYTHONDONTWRITEBYTECODE
	# set it would compile it at every start: ~80 ms of a worker's ready time)
	$(BIN)/python -m compileall -q core plugins config > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/banktasks demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy core

readme:
	$(PYTHON) scripts/sync_readme.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
