# The two commands of the README. Both set up what they need (system packages when run as root,
# the virtualenv in .venv), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit clean

demo:
	bash scripts/setup.sh demo
	$(BIN)/mie demo

test:
	bash scripts/setup.sh test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Quick loops for developers, on an existing .venv.
lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

unit:
	$(BIN)/python -m pytest tests/unit -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
