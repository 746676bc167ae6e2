# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need from nothing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser lint typecheck unit test demo bench chaos screenshots clean

WORKER_PIN := sandbox/host/functions-worker.txt
WORKER_DIR := $(VENV)/functions-worker

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml $(WORKER_PIN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -rf $(WORKER_DIR)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --only-binary :all: --python-version 3.13 \
		--target $(WORKER_DIR) -r $(WORKER_PIN)
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

# Debian's headless Chromium and its driver, for the dashboard's browser tests (tests/dashboard): installed when
# missing and this runs as root with apt-get; otherwise those tests skip, saying how to run them (with CI=true they
# fail instead). Never a browser download at run time.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium and chromium-driver (Debian) for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			>/dev/null) || echo "apt-get could not install chromium: the browser tests will skip"; \
	else echo "chromium and chromium-driver are missing (root and apt-get install them): the browser tests will skip"; fi

# Two xdist workers more than cores: many tests wait on simulated time in real seconds (stacks at a time scale, a
# restarted host), so with one worker per core the CPU sat half idle (pytest on 2 cores: 284 s with 2 workers,
# 241 s with 3, all 1,050 tests passing; 1,091 tests: 224 s with 3, 204 s with 4). PYTEST_WORKERS=n overrides it.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 2)')

unit: install browser
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck unit

demo: install
	$(BIN)/python -m sandbox demo

bench: install
	$(BIN)/python -m bench

# Proof under faults (bench/chaos.py): a 100-account rollout through the HTTP API while Azure fails on every route,
# writes lose their replies, 429 storms blow, Event Grid duplicates and reorders, and the whole stack is SIGKILLed 5
# times; writes bench/chaos.json and fails unless every invariant is 0.
chaos: install
	$(BIN)/python -m bench.chaos

# The README's dashboard screenshots (docs/img), taken by the browser tests.
screenshots: install browser
	CI=true CMK_SCREENSHOTS=docs/img $(BIN)/pytest -n 0 tests/dashboard/test_dashboard_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
