# controlroom — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
# The dashboard: sources in web/, its static export copied into the package (served at /, shipped
# in the wheel); rebuilt when any of its sources is newer than the copy.
DASHBOARD := src/controlroom/web/index.html
NPM_STAMP := web/node_modules/.ci-installed
WEB_SRC   := $(shell find web/src web/public -type f 2>/dev/null) \
             web/package.json web/next.config.ts web/tsconfig.json web/openapi.json

.PHONY: run test install dashboard chromium lint bench pg clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,test]'
	touch $(STAMP)

install: $(STAMP)

## Start controlroom on SQLite (~/.controlroom) with a simulated agent fleet; prints the URL and an API key.
## Builds the dashboard first when its sources changed (needs Node 20+; without npm, the API alone).
run: $(STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory dashboard; \
	else echo "npm not found: serving the API without the dashboard (install Node 20+ to build it)"; fi
	$(BIN)/controlroom demo

## Install what the tests need (the dashboard built, Debian's Chromium for the browser tests) and run
## the whole suite (SQLite and PostgreSQL).
test: $(STAMP) pg chromium dashboard
	CONTROLROOM_TEST_PG_URL=$(PG_URL) $(BIN)/python -m pytest -n 2 -q

## The dashboard's static export, built and copied into the package (src/controlroom/web/).
dashboard: $(DASHBOARD)

$(NPM_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

$(DASHBOARD): $(NPM_STAMP) $(WEB_SRC)
	cd web && npm run build
	rm -rf src/controlroom/web
	cp -r web/out src/controlroom/web
	find src/controlroom/web -type f \( -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.txt' \
	  -o -name '*.json' -o -name '*.svg' -o -name '*.map' \) -exec gzip -k -9 -n {} +

## Debian's Chromium, which the browser tests drive (Playwright never downloads a browser here).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## Benchmarks (results recorded in bench/README.md).
bench: $(STAMP) pg chromium dashboard
	CONTROLROOM_TEST_PG_URL=$(PG_URL) $(BIN)/python bench/run.py

## Make sure the local PostgreSQL server is up.
pg:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules web/.next web/out src/controlroom/web
