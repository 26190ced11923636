# ShelfWise: `make run` starts everything on a fresh clone; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint docs bench chaos fuzz install migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

# Development settings, stated here rather than as the code's defaults: DEBUG on (so the public
# development SECRET_KEY is accepted and FIELD_ENCRYPTION_KEYS may be left out). A DEBUG already in
# the environment wins.
run migrate: export DEBUG ?= true

migrate: install
	$(BIN)/python manage.py migrate --no-input

run: migrate
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/honcho start -f Procfile web worker relay webhooks

# The docs build as part of lint: a broken link, a missing page or a stale generated page fails `make test`.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m docsgen --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Regenerates the event catalogue and the settings page, then builds the site into site/.
docs: install
	$(BIN)/python -m docsgen
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The suite in parallel pytest-xdist workers, each with its own test database and Redis database
# (docs/testing.md, Parallel workers); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope,)

# The API against its OpenAPI document with many more generated requests than `make test` sends.
fuzz: install
	SCHEMATHESIS_MAX_EXAMPLES=$(or $(EXAMPLES),100) $(BIN)/pytest -m schemathesis

bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)
	$(if $(QUICK)$(BENCH_ONLY),,$(BIN)/python -m bench.table)

# The whole platform under faults, then the proof of the guarantees (docs/testing.md, Chaos run), then the
# API against its OpenAPI document with many generated requests (`make fuzz`).
CHAOS_ORDERS ?= 3000
chaos: install
	$(BIN)/python -m chaos --orders $(CHAOS_ORDERS)
	SCHEMATHESIS_MAX_EXAMPLES=$(or $(EXAMPLES),100) $(BIN)/pytest -m schemathesis

clean:
	rm -rf .broker staticfiles site db.sqlite3 db.sqlite3-wal db.sqlite3-shm
