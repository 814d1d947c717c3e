# Two commands set everything up on a fresh clone with only python3:
#   make run    - the daemon on the built-in simulated market (no account, no network)
#   make test   - lint, types and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench soak clean demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# 20 simulated sessions, a loop every 15 simulated minutes, the scanner at each simulated 16:05.
run: $(STAMP)
	LOOP_INTERVAL_SECONDS=$${LOOP_INTERVAL_SECONDS:-900} $(BIN)/trading-daemon run --sim --sessions 20

demo: $(STAMP)
	$(BIN)/python core/tiered_position_sizer.py

lint: $(STAMP)
	$(BIN)/ruff check agents core config scripts tests

typecheck: $(STAMP)
	$(BIN)/mypy agents core config scripts

pytest: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python scripts/bench_data.py
	$(BIN)/python scripts/bench_loop.py
	$(BIN)/python scripts/bench_backtest.py
	$(BIN)/python scripts/bench_operations.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
