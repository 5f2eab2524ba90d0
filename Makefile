VENV ?= .venv

.PHONY: setup demo test lint format
setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/edge demo

test: setup
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
