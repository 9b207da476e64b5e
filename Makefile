# The same commands locally and in CI (.ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check fix bench install clean openapi screenshots

# Create .venv if missing and install the project with its server and dev extras.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the Coze simulator and the gateway on SQLite + ./data, print a demo token and a curl.
demo: $(STAMP)
	$(BIN)/ability-gateway demo

## Run the whole test suite: on SQLite, then again on PostgreSQL when one answers on
## 127.0.0.1:5432 (GATEWAY_TEST_REQUIRE_POSTGRES=1 makes its absence an error, as in CI).
test: $(STAMP)
	$(BIN)/python -m pytest
	@if $(BIN)/python -m tests.postgres_available; then \
		echo "== the same suite on PostgreSQL =="; \
		GATEWAY_TEST_DATABASE=postgresql $(BIN)/python -m pytest; \
	elif [ -n "$$GATEWAY_TEST_REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL is required but not reachable on 127.0.0.1:5432"; exit 1; \
	else \
		echo "PostgreSQL not reachable on 127.0.0.1:5432: the PostgreSQL pass is skipped"; \
	fi

## Refresh the console screenshots the README shows (the browser tests take them).
screenshots: $(STAMP)
	$(BIN)/python -m pytest -q tests/server/console/test_browser.py
	mkdir -p docs/screenshots
	cp screenshots/playground.png screenshots/task.png screenshots/generation-zh.png docs/screenshots/

## Formatting, lint and types.
check: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

fix: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

## Regenerate the OpenAPI snapshot (tests/openapi.json) after a deliberate API change.
openapi: $(STAMP)
	$(BIN)/python -m tests.test_openapi

## Benchmarks (ratios against a baseline measured in the same run).
bench: $(STAMP)
	$(BIN)/python bench/invoke_latency.py
	$(BIN)/python bench/callbacks.py
	$(BIN)/python bench/inflight.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/usage_query.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
