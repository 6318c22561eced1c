# banktasks: `make demo` runs the main job end to end; `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXAMPLE      := examples/banktasks-sanctions
EXAMPLE_VENV ?= var/example-venv

.PHONY: demo test test-example test-fast reliability fuzz lint bench-full format typecheck docs bench clean

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

# the whole suite, then the tutorial's plugin as its author tests it
test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(MAKE) test-example

# The tutorial's plugin, installed and tested the way its author would: a venv of its own
# (the project's .venv is left alone), banktasks[testing] and the plugin installed with pip.
$(EXAMPLE_VENV)/.installed: pyproject.toml $(EXAMPLE)/pyproject.toml
	rm -rf $(EXAMPLE_VENV)
	$(PYTHON) -m venv $(EXAMPLE_VENV)
	$(EXAMPLE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EXAMPLE_VENV)/bin/python -m pip install --quiet -e '.[testing]' -e $(EXAMPLE)
	touch $@

test-example: $(EXAMPLE_VENV)/.installed
	cd $(EXAMPLE) && $(abspath $(EXAMPLE_VENV))/bin/python -m pytest -q

# the broker fuzzer's long run: 10,000 generated malformed messages at a live worker
fuzz: $(STAMP)
	BANKTASKS_FUZZ_MESSAGES=10000 $(BIN)/python -m pytest -q -s tests/security/test_sec_fuzz.py

# the zero-loss scenarios 20 times each (docs/reliability.md); `make test` runs each once
reliability: $(STAMP)
	BANKTASKS_RELIABILITY_RUNS=$${BANKTASKS_RELIABILITY_RUNS:-20} BANKTASKS_RELIABILITY_LOAD=10000 \
		$(BIN)/python -m pytest -q -s \
		tests/reliability/test_rel_load.py tests/reliability/test_rel_broker_restart.py \
		tests/reliability/test_rel_submission.py

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
	$(BIN)/mkdocs build --strict --quiet

# the default run (under 5 min); `make bench-full` is the full one that records the README table
bench: $(STAMP)
	$(BIN)/python -m bench

bench-full: $(STAMP)
	$(BIN)/python -m bench --full

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
