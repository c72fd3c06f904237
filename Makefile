# make run  - set up and start the portal (web + worker + scheduler) on 127.0.0.1:$(PORT)
# make test - set up and run the whole suite (SQLite, then PostgreSQL when initdb is found)

PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-sqlite test-postgres install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PORT=$(PORT) $(BIN)/python -m portal.launcher

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest --db=postgresql $(PYTEST_ARGS)

test-sqlite: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(TEST_STAMP)
	$(BIN)/python -m pytest --db=postgresql $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
