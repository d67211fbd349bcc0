# SmartBuy: `make demo` runs the pipeline once on the embedded default; `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install demo test ui simulator migrate status check lint-sql bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/smartbuy demo

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

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
