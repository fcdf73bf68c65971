# The README's two commands are `make run` and `make test`; everything else is a convenience.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint typecheck unit services-up services-down clean bench bench-rebuild bench-export

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Serve the API on the embedded default (SQLite in ./var, no Kafka) on $PORT (default 8000).
run: $(STAMP)
	$(BIN)/governance serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

## Fill the embedded default (or DATABASE_URL) with a demo organization; prints tokens and curl lines.
demo: $(STAMP)
	$(BIN)/governance demo

## Lint, type-check and run every test against SQLite, PostgreSQL and Kafka (started if needed).
test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

## Every benchmark beside its baseline (bench/suite.py); QUICK=1 for small sizes and one round.
## Starts PostgreSQL and Kafka like `make test`; writes the table into BENCHMARKS.md and README.md.
bench: $(STAMP)
	$(BIN)/python -m bench.suite $${QUICK:+--quick}

## Rebuild speed of `governance replay` on 1M events (SQLite, and PostgreSQL at DATABASE_URL).
bench-rebuild: $(STAMP)
	$(BIN)/python -m bench.rebuild --events $${EVENTS:-1000000} --rounds $${ROUNDS:-3} \
		--backend sqlite $${DATABASE_URL:+--backend postgres}

## Peak memory of `governance audit export` for 10k and 100k events.
bench-export: $(STAMP)
	$(BIN)/python -m bench.export_memory --events $${EVENTS:-100000}

clean:
	rm -rf $(VENV) var test-output
