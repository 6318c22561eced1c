# banktasks: `make demo` runs the main job end to end; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint format typecheck docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# what pip does for an installed package (not for an editable one): bytecode ahead of
	# time, so a process does not compile the project at start-up (with PYTHONDONTWRITEBYTECODE
	# set it would compile it at every start: ~80 ms of a worker's ready time)
	$(BIN)/python -m compileall -q core plugins config banktasks_testing > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/banktasks demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

# ruff, the import contracts (layers, plugin independence), mypy on the core, the docs build
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy core
	$(MAKE) docs

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy core

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir var/site

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
