# Two commands set up and run everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-learning test-all lint docs install clean

# uv resolves and installs the same versions as pip in a fraction of the time.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[test,ray,bench,docs,export,dmc]"
	touch $(STAMP)

install: $(STAMP)

## Short WPPG-I run on Pendulum-v1 (the library's defaults with (64, 64) networks, which Pendulum needs no more than;
## 8 gradient steps per update call, UTD 1): writes runs/demo/{eval.csv,summary.json,...} and runs/demo/curve.png
demo: $(STAMP)
	$(BIN)/wppg train --algo wppg-i --env Pendulum-v1 --total-steps 10000 --learning-starts 1000 \
		--hidden 64 64 --train-freq 8 --eval-every 2500 --eval-episodes 10 --seed 0 --out runs/demo --overwrite
	$(BIN)/wppg plot runs/demo --out runs/demo/curve.png
	@cat runs/demo/summary.json

# Test processes: the CPUs this process may run on (its affinity, not the host's count), at most 4.
TEST_PROCS ?= $(shell $(PY) -c "import os; print(min(4, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1))")

## Unit tests, smoke runs and a short learning check (the quadratic bandit): CPU, TEST_PROCS test processes (pytest-xdist)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_PROCS) --durations=15

## Lint (ruff) and format check (ruff format) of src, tests and experiments, and the type check of the public API (mypy): seconds
lint: $(STAMP)
	$(BIN)/ruff check src tests experiments
	$(BIN)/ruff format --check src tests experiments
	$(BIN)/mypy

## The documentation site, built strictly (a broken link or reference fails): site/index.html
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

## Longer learning checks and the Ray backend end-to-end test (tens of minutes on CPU)
test-learning: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## Every test: the default run, the `full` tests (repeated checks, experiment scripts) and `test-learning`'s
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_PROCS) -m "slow or not slow"

clean:
	rm -rf $(VENV) runs site
