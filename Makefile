# ShelfWise: `make run` starts everything on a fresh clone; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos fuzz install migrate clean

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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# The API against its OpenAPI document with many more generated requests than `make test` sends.
fuzz: install
	SCHEMATHESIS_MAX_EXAMPLES=$(or $(EXAMPLES),100) $(BIN)/pytest -m schemathesis

bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)

# The whole platform under faults, then the proof of CONTRACT §7 (README, "Chaos run"), then the
# API against its OpenAPI document with many generated requests (`make fuzz`).
CHAOS_ORDERS ?= 3000
chaos: install
	$(BIN)/python -m chaos --orders $(CHAOS_ORDERS)
	SCHEMATHESIS_MAX_EXAMPLES=$(or $(EXAMPLES),100) $(BIN)/pytest -m schemathesis

clean:
	rm -rf .broker staticfiles db.sqlite3 db.sqlite3-wal db.sqlite3-shm
