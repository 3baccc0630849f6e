# Quick start: `make demo` and `make test`. Both create (or reuse) .venv, install the pinned
# dependencies and the simulators when missing, then run.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export AMARANTH_USE_YOSYS := builtin
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
# test processes (pytest-xdist): one per core; builds shared between them are locked (sim/runner.py)
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST  := $(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=20

.PHONY: demo test test-fast lint bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/install.sh
	bash tools/install.sh $(VENV)
	@touch $@

demo: $(STAMP)
	$(PY) -m spvit.cli demo --force

test: lint
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# ruff's rules and line length: [tool.ruff] in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/golden_speed.py

clean:
	rm -rf build .pytest_cache
