# The two commands: `make demo` and `make test`. Each does the whole set-up first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint docs clean gdal

setup: $(STAMP)

gdal:
	@if ! command -v gdal-config >/dev/null 2>&1; then \
	  echo "gdal-config not found: installing libgdal-dev and gdal-bin"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "ERROR: need root to install GDAL. Run: sudo apt-get install -y libgdal-dev gdal-bin"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libgdal-dev gdal-bin; \
	fi

$(STAMP): pyproject.toml | gdal
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q numpy setuptools wheel
	@$(VPY) -c "from osgeo import gdal_array" 2>/dev/null || \
	  $(VPY) -m pip install -q --no-build-isolation "gdal[numpy]==$$(gdal-config --version)"
	$(VPY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/sharedapplier demo

test: setup
	$(VPY) -m ruff check sharedapplier tests perf
	$(VPY) -m pytest -q

bench: setup
	$(VPY) perf/bench.py

lint: setup
	$(VPY) -m ruff check sharedapplier tests perf

clean:
	rm -rf $(VENV) build *.egg-info
