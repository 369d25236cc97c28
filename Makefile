# Two entry points (see README): `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test lint bench bench-tnews clean

setup: $(STAMP)

# torch is installed first and pinned: an unpinned torch drags in several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	@# setuptools explains editable installs at length on every install; a newcomer's first screen stays clean
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install -q -e '.[train,test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(VENV)/bin/jobsub demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Two pytest-xdist workers by default (tests using dockerd, Ray or Slurm stay on one worker each: --dist
# loadgroup, tests/conftest.py), then the tests marked `timing` (wall-clock bounds) alone, so no other test's
# load moves their clocks. PYTEST_WORKERS=0 runs everything in one process (docs/architecture.md).
PYTEST_WORKERS ?= 2

test: setup lint
ifeq ($(PYTEST_WORKERS),0)
	$(PY) -m pytest -q
else
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not timing"
	$(PY) -m pytest -q -m timing
endif

# Benchmarks are not part of CI: they compare jobsub with its peers in one run (see docs/performance.md)
bench: setup
	$(PY) benchmarks/transfer.py
	$(PY) benchmarks/jobs.py

# The TNEWS experiment (docs/results.md): about an hour on a 2-core CPU; needs ../shared/data
bench-tnews: setup
	$(PY) benchmarks/tnews.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
