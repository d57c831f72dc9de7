# The two commands of the README. Both set up what they need (system packages when run as root,
# the virtualenv in .venv), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit fuzz clean

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

# Coverage-guided fuzzing of every target (docs/reliability.md), FUZZ_INPUTS per target, two at a
# time; nightly size: make fuzz FUZZ_INPUTS=200000. Exits non-zero on any finding.
FUZZ_INPUTS ?= 20000
FUZZ_JOBS ?= 2
fuzz:
	bash scripts/setup.sh test
	$(BIN)/python scripts/fuzz.py --inputs $(FUZZ_INPUTS) --jobs $(FUZZ_JOBS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
