# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both install what is missing first (scripts/setup.sh), so they work on a fresh machine.
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check spec impl model_checks tests bench
	$(BIN)/mypy spec impl model_checks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
