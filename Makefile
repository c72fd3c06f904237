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

# Both databases at once (two cores): SQLite's report is printed after PostgreSQL's.
test: $(TEST_STAMP)
	@mkdir -p .test-logs && rm -f .test-logs/sqlite.rc
	@( $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) > .test-logs/sqlite.log 2>&1; \
	   echo $$? > .test-logs/sqlite.rc.tmp; mv .test-logs/sqlite.rc.tmp .test-logs/sqlite.rc ) &
	@$(BIN)/python -m pytest -p no:cacheprovider --db=postgresql $(PYTEST_ARGS); pg=$$?; \
	  while [ ! -f .test-logs/sqlite.rc ]; do sleep 1; done; \
	  echo "===== SQLite run ====="; cat .test-logs/sqlite.log; sl=$$(cat .test-logs/sqlite.rc); rm -f .test-logs/sqlite.rc; \
	  echo "make test: PostgreSQL exit $$pg, SQLite exit $$sl"; [ $$pg -eq 0 ] && [ $$sl -eq 0 ]

test-sqlite: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(TEST_STAMP)
	$(BIN)/python -m pytest --db=postgresql $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .test-logs
