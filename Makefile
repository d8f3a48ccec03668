# The two commands a newcomer needs: `make run` and `make test`. Both set everything
# up (virtualenv, dependencies, browser, database) and are fast once it is set up:
# each step leaves a stamp file and only reruns when its inputs change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_DEPS := $(VENV)/.deps-stamp
STAMP_BROWSER := $(VENV)/.browser-stamp
STAMP_BENCH := $(VENV)/.bench-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint pytest setup browser migrate demo-data bench bench-compare clean

run: setup demo-data
	$(PY) manage.py runpool --host $(HOST) --port $(PORT) --with-demo-site

test: setup lint pytest

setup: $(STAMP_DEPS) $(STAMP_BROWSER) migrate

$(STAMP_DEPS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Prefer the distribution's headless shell; install it with apt when we are root on
# Debian/Ubuntu; otherwise fall back to Playwright's own download.
$(STAMP_BROWSER): $(STAMP_DEPS)
	@if [ -n "$$POOL_BROWSER_PATH" ]; then \
	    echo "browser: POOL_BROWSER_PATH=$$POOL_BROWSER_PATH"; \
	elif command -v chromium-headless-shell >/dev/null 2>&1; then \
	    echo "browser: $$(command -v chromium-headless-shell)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell) \
	      || $(VENV)/bin/playwright install chromium-headless-shell; \
	else \
	    $(VENV)/bin/playwright install chromium-headless-shell; \
	fi
	$(PY) -c "import sys, pool_core.browser as b; sys.exit(b.main(sys.argv[1:]))" $$POOL_BROWSER_PATH
	touch $@

migrate: $(STAMP_DEPS)
	@mkdir -p var
	$(PY) manage.py migrate --noinput -v 0

demo-data: setup
	$(PY) manage.py demo_data --url http://$(HOST):$(PORT)/

lint: $(STAMP_DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

pytest: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The quick loop while editing: everything but the tests marked slow (a few minutes).
test-fast: setup lint
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

# The alternatives poolsite is compared with (Crawlee, matplotlib) live in the optional
# `bench` group, never in the product's dependencies.
$(STAMP_BENCH): $(STAMP_DEPS)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: setup $(STAMP_BENCH)
	$(PY) bench/run_all.py

# e.g. make bench-compare BENCH_ARGS="--systems sequential,crawlee,pool4 --rounds 1"
bench-compare: setup $(STAMP_BENCH)
	nice -n 10 $(PY) bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
