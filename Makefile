# SmartBuy: `make demo` runs the pipeline once on the embedded default; `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install browser demo test ui simulator migrate status check lint-sql bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/smartbuy demo

# tests/e2e/test_ui.py drives the Dagster UI in Debian's chromium (Playwright, no browser download).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the UI tests"; \
	  SUDO=$$([ "$$(id -u)" -ne 0 ] && echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: install browser
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q

ui: install
	$(VENV)/bin/smartbuy dev

simulator: install
	$(VENV)/bin/smartbuy simulator

migrate: install
	$(VENV)/bin/smartbuy db migrate

status: install
	$(VENV)/bin/smartbuy db status

# Locking hazards in migrations (squawk). Rules that only fit online schema changes of large
# existing tables are excluded: see docs/design.md, "Migrations".
lint-sql: install
	$(VENV)/bin/squawk --config .squawk.toml sql/*.sql

clean:
	rm -rf $(VENV) .smartbuy .pytest_cache
