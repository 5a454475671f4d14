# CoinLink: `make run` sets everything up and serves the platform; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run serve prod-local test lint format typecheck clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Set up (virtualenv, install, migrate, demo data and its replayed fortnight, operator account) and serve on
## the embedded default.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	# A fortnight of the content funnel and the self-learning loop, once (about a minute on a fresh database).
	$(BIN)/python manage.py replay_fortnight --unless-replayed
	$(BIN)/python manage.py ensure_dev_operator
	AGENT_PIPELINE_SCHEDULE="$${AGENT_PIPELINE_SCHEDULE-*/30 * * * *}" $(BIN)/python manage.py runserver $(HOST):$(PORT)

## Serve without the set-up steps.
serve: install
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## The production topology on this machine: the Procfile's processes (web, worker, beat) run by honcho against
## PostgreSQL and Redis (DATABASE_URL and REDIS_URL, the local servers by default), after migrating.
prod-local: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/coinlink
prod-local: export REDIS_URL ?= redis://127.0.0.1:6379/0
prod-local: export PATH := $(CURDIR)/$(BIN):$(PATH)
prod-local: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py metrics_prepare
	# The bots only with their tokens in the environment: without them they exit, and honcho would stop all.
	HOST=$(HOST) $(BIN)/honcho start --port $(PORT) web worker beat $(if $(DISCORD_BOT_TOKEN),discord) $(if $(TELEGRAM_BOT_TOKEN),telegram)

## The test suite (CI sets DATABASE_URL and REDIS_URL to run it on PostgreSQL and Redis).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy apps coinlink

## Benchmarks (bench/README.md): a pipeline cycle, Stripe webhooks through daphne, conversion scoring, moderation decisions, each
## against a baseline run in the same process; on a throwaway SQLite database, or PostgreSQL when
## BENCH_DATABASE_URL is set. About ten minutes on two cores; `python bench/<name>.py --quick` for a first look.
bench: install
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/conversion.py
	$(BIN)/python bench/moderation.py
	$(BIN)/python bench/experiments.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* var .pytest_cache .ruff_cache .mypy_cache
