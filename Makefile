# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench typecheck clean

# (Re)install when the venv is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "amcheck needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0] + ": name another, e.g. make demo PYTHON=python3.12")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,plot]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/amcheck demo

# Two worker processes: on a fresh clone most of the suite's time is numba compiling kernels, one
# core's work each (4 min instead of 8.5 on 2 cores). `pytest` alone runs in one process.
test: $(STAMP)
	$(PY) -m pytest -n 2

# Every benchmark script with its defaults (long_sequences in its --quick form: the full run takes
# about 20 minutes). They print their figures and write no file unless asked (--json, --out,
# --plot); each section of docs/benchmarks.md gives the full command behind its figures.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/schedules.py
	$(PY) benchmarks/zero_copy.py
	$(PY) benchmarks/disk_vs_ram.py
	$(PY) benchmarks/kernels_vs_devito.py
	$(PY) benchmarks/fwi_overlap.py
	$(PY) benchmarks/fwi_threads.py
	$(PY) benchmarks/long_sequences.py --quick

typecheck: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"
	tools/typecheck.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +  # numba's kernel caches too
