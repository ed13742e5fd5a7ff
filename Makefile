# controlroom — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test install lint bench pg clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,test]'
	touch $(STAMP)

install: $(STAMP)

## Start controlroom on SQLite (~/.controlroom) with a simulated agent fleet; prints the URL and an API key.
run: $(STAMP)
	$(BIN)/controlroom demo

## Install what the tests need and run the whole suite (SQLite and PostgreSQL).
test: $(STAMP) pg
	CONTROLROOM_TEST_PG_URL=$(PG_URL) $(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## Benchmarks (results recorded in bench/README.md).
bench: $(STAMP) pg
	CONTROLROOM_TEST_PG_URL=$(PG_URL) $(BIN)/python bench/run.py

## Make sure the local PostgreSQL server is up.
pg:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
