# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need from nothing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck unit test demo bench clean

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

unit: install
	$(BIN)/pytest

test: lint typecheck unit

demo: install
	$(BIN)/python -m sandbox demo

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
