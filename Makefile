# The two set-up commands are `make demo` and `make test`; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo tour bench clean system

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict aauth_core aauth_backends aauth_flows

system:
	bash scripts/system-packages.sh

unit: $(STAMP) system
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP) system
	bash scripts/demo.sh

tour: $(STAMP) system
	bash scripts/cli-tour.sh

bench: $(STAMP) system
	$(BIN)/python -m benchmarks.run --write-docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
