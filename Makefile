# The two commands: `make demo` and `make test`. Each does the whole set-up first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test testbeds bench bench-launchers bench-scaling bench-faults lint docs clean gdal

setup: $(STAMP)

gdal:
	@if ! command -v gdal-config >/dev/null 2>&1; then \
	  echo "gdal-config not found: installing libgdal-dev and gdal-bin"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "ERROR: need root to install GDAL. Run: sudo apt-get install -y libgdal-dev gdal-bin"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libgdal-dev gdal-bin; \
	fi

$(STAMP): pyproject.toml Makefile | gdal
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@echo "setting up $(VENV): pip, numpy, GDAL's Python bindings $$(gdal-config --version), sharedapplier and its test and docs tools"
	@$(VPY) -m pip install -q --upgrade pip
	@$(VPY) -m pip install -q numpy "setuptools>=77" wheel
	@$(VPY) -c "from osgeo import gdal_array" 2>/dev/null || \
	  $(VPY) -m pip install -q --no-build-isolation "gdal[numpy]==$$(gdal-config --version)"
	@PYTHONWARNINGS=ignore $(VPY) -m pip install -q -e ".[test,docs]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/sharedapplier demo

test: setup testbeds
	$(VPY) -m ruff check sharedapplier tests perf
	$(VPY) -m pytest -q

# Batch schedulers for the launcher tests (tests/testbeds/README.md): a one-node Slurm, Slurm's
# PBS-style qsub and munge, from apt.  The tests start and stop the daemons themselves; without
# root (or sudo -n) nothing is installed and those tests are skipped.
TESTBED_PKGS := slurm-wlm slurmctld slurmd slurm-client munge slurm-wlm-torque
testbeds:
	@if command -v sbatch >/dev/null 2>&1 && [ -x /usr/sbin/munged ] && \
	   grep -qi slurm /usr/bin/qsub 2>/dev/null; then exit 0; fi; \
	CMD="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TESTBED_PKGS)"; \
	if [ "$$(id -u)" = 0 ]; then sh -c "$$CMD"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n sh -c "$$CMD"; \
	else echo "NOTE: Slurm/munge/slurm-wlm-torque missing and no root: the batch test beds will be skipped."; \
	  echo "To install them run: sudo sh -c '$$CMD'"; fi

bench: setup
	$(VPY) perf/bench.py

bench-launchers: setup testbeds
	$(VPY) perf/launchers.py

bench-scaling: setup
	$(VPY) perf/scaling.py --runs 3

bench-faults: setup
	$(VPY) perf/faults.py

docs: setup
	$(VPY) -m sphinx -W --keep-going -b html docs docs/_build/html

lint: setup
	$(VPY) -m ruff check sharedapplier tests perf

clean:
	rm -rf $(VENV) build *.egg-info
