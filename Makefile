# The two commands of the README's quick start: `make demo` and `make test`.
# Both do all set-up on a fresh machine (system packages, virtualenv, services).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DURATION ?=

.PHONY: install demo test lint unit services-up services-down clean-state

$(STAMP): pyproject.toml
	bash deploy/local/ensure-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

## The live demo: services up, migrate, topics, worker, backfill, live simulator, indicator
## tables every 10 s. Ctrl-C stops; DURATION=60 bounds the run.
demo: install
	$(BIN)/palliwatch demo $(if $(DURATION),--duration $(DURATION),)

## Lint, type-check, then every test on the real local Kafka and PostgreSQL.
test: install lint
	$(BIN)/palliwatch services up
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy streams processors schemas grafana
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q -m "not integration"

services-up: install
	$(BIN)/palliwatch services up

services-down:
	$(BIN)/palliwatch services down

## Stop services and delete all local state (Kafka log, PostgreSQL cluster).
clean-state: services-down
	rm -rf .palliwatch
