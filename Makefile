# make run  - set up and start the portal (web + worker + scheduler) on 127.0.0.1:$(PORT)
# make test - set up and run the whole suite (SQLite, then PostgreSQL when initdb is found)
# make test-long - the money property tests alone (-m money_property), Hypothesis profile "long"
#                  (10,000 examples each), on SQLite and PostgreSQL side by side
# make screenshots - regenerate docs/screenshots/*.png (guest page and portal at 375 px) with scripts/screenshots.py

PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-long test-sqlite test-postgres screenshots install clean

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

# The same, for the money property tests with 10,000 examples each: an hour or two, so no
# per-test timeout; --hypothesis-show-statistics prints each test's examples run and time.
LONG_ARGS := -p no:cacheprovider -m money_property --timeout=0 --hypothesis-show-statistics
test-long: $(TEST_STAMP)
	@mkdir -p .test-logs && rm -f .test-logs/sqlite-long.rc
	@( HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest $(LONG_ARGS) $(PYTEST_ARGS) > .test-logs/sqlite-long.log 2>&1; \
	   echo $$? > .test-logs/sqlite-long.rc.tmp; mv .test-logs/sqlite-long.rc.tmp .test-logs/sqlite-long.rc ) &
	@HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest $(LONG_ARGS) --db=postgresql $(PYTEST_ARGS); pg=$$?; \
	  while [ ! -f .test-logs/sqlite-long.rc ]; do sleep 1; done; \
	  echo "===== SQLite run ====="; cat .test-logs/sqlite-long.log; sl=$$(cat .test-logs/sqlite-long.rc); \
	  rm -f .test-logs/sqlite-long.rc; \
	  echo "make test-long: PostgreSQL exit $$pg, SQLite exit $$sl"; [ $$pg -eq 0 ] && [ $$sl -eq 0 ]

test-sqlite: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(TEST_STAMP)
	$(BIN)/python -m pytest --db=postgresql $(PYTEST_ARGS)

# A throwaway portal (temporary SQLite + bundled Redis + the demo), photographed by Chromium through Playwright.
screenshots: $(TEST_STAMP)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) instance .pytest_cache .test-logs
