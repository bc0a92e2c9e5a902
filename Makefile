# Commonroom: `make demo` serves a demo school; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo serve test lint typecheck check bench bench-long bench-import bench-screen bench-review screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Commonroom needs Python 3.11 (set PYTHON=...)" if sys.version_info[:2] != (3, 11) else 0)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py seed_demo
	@echo "Serving the demo school on http://$(HOST):$(PORT)/ (admin: http://$(HOST):$(PORT)/admin/)"
	DEBUG=1 $(PY) -m commonroom.serve -b $(HOST) -p $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

check: lint typecheck
	$(PY) manage.py makemigrations --check --dry-run --settings=tests.settings

# The load benchmark against its two baselines (needs PostgreSQL and Redis on 127.0.0.1; under 10 minutes).
bench: install
	$(PY) bench/load_bench.py $(BENCH_ARGS)

bench-long: install
	$(PY) bench/load_bench.py --long $(BENCH_ARGS)

bench-import: install
	$(PY) bench/import_bench.py $(BENCH_ARGS)

bench-review: install
	$(PY) bench/review_bench.py $(BENCH_ARGS)

bench-screen: install
	DEBUG=1 $(PY) manage.py screen --evaluate tests/data/screening/heldout
	$(PY) bench/screen_bench.py $(BENCH_ARGS)
	$(PY) bench/profanity_bench.py

# The browser tests save the main pages at desktop and phone width (needs DATABASE_URL and REDIS_URL
# pointing at PostgreSQL and Redis, and Chromium; see README).
screenshots: install
	COMMONROOM_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_browser.py -k main_pages

clean:
	rm -rf $(VENV) data staticfiles .pytest_cache .mypy_cache .ruff_cache
