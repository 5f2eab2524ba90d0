VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint format bench
setup:
	bash scripts/setup.sh

demo:
	$(VENV)/bin/edge demo

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
