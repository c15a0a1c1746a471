# `make run` and `make test` each set everything up on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow lint bench bench-quick format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first, pinned, so that nothing later pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ptflow run

# The default suite, on two workers (pytest-xdist): most of its time is single-threaded
# (starting runs, writing files), so two cores take it in about 0.7 of one worker's time.
# Slow tests are marked and run by test-slow (which CI runs), one at a time: they time
# signals and processes, which a second worker's load would disturb.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n 2 -rs  # -rs: say which tests were skipped, and why

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]  # 5: no slow tests collected

# Benchmarks print ratios against baselines timed in the same run; results go to benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench.py --quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .mypy_cache .pytest_cache .ruff_cache
