# The two commands: `make demo` (backfill the demo universe on the embedded default, then print the
# health report) and `make test` (the whole suite). Both create or reuse .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-smoke bench-scale validate serve dev clean-data chromium \
	screenshot celery-up celery-down celery-backfill

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,celery]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/market-pipeline demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# Debian's Chromium, which the dashboard's browser tests drive through Playwright (never
# `playwright install`: it downloads a browser, which fails without network).
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

# Regenerates docs/dashboard.png, the README's picture: the demo, then the page in Chromium.
screenshot: $(STAMP) chromium
	$(BIN)/market-pipeline demo
	$(BIN)/python -m bench.tools.dashboard_screenshot --output docs/dashboard.png

# What .ci/run checks besides the tests: lint, formatting, types (strict on the domain layer) and
# the layer contracts of pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check market_pipeline market_pipeline_tests bench
	$(BIN)/ruff format --check market_pipeline market_pipeline_tests bench
	$(BIN)/mypy market_pipeline
	$(BIN)/lint-imports

validate: $(STAMP)
	$(BIN)/dagster definitions validate -w workspace.yaml

# The admin HTTP API on 127.0.0.1:8000 over the same database (after `make demo`).
serve: $(STAMP)
	$(BIN)/market-pipeline serve

dev: $(STAMP)
	$(BIN)/market-pipeline dagster-home >/dev/null
	DAGSTER_HOME=$$($(BIN)/market-pipeline dagster-home) $(BIN)/dagster dev -w workspace.yaml

# The multi-process scale-out demo (README "Scaling out"): Redis check, two Celery workers, the
# daemon and the webserver on a PostgreSQL instance; then a backfill queued as runs they share.
celery-up: $(STAMP)
	deploy/celery/local.sh up

celery-backfill: $(STAMP)
	deploy/celery/local.sh backfill

celery-down:
	deploy/celery/local.sh down

bench: $(STAMP)
	$(BIN)/python -m bench

bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

# The cost curve (README "Cost curve"): the backfill at 250 to 10,000 partitions on PostgreSQL and
# SQLite against Dagster's floor; JSON and plot in bench/results, the README's copy in docs/.
bench-scale: $(STAMP)
	$(BIN)/python -m bench --only scale_curve --output bench/results/scale_curve.json
	$(BIN)/python -m bench.tools.scale_curve_plot bench/results/scale_curve.json \
		--output bench/results/scale_curve.png --copy docs/scale_curve.png

# Removes the embedded default storage (our SQLite tables and the Dagster home).
clean-data:
	rm -rf .market_pipeline
