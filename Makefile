# featlab: two commands on a fresh machine.
#   make demo   create .venv, install torch (pinned, overridable) + featlab, run the main job
#   make test   same install plus the dev/data/dask/slurm/xrfm extras, then the test suite
#   make chromium   headless Chromium from Debian's packages, for the report's browser test
#                   (CI runs it; locally that test is skipped when no Chromium is on PATH)
PYTHON     ?= python3
VENV       ?= .venv
# A CPU wheel by default; override e.g. TORCH_SPEC="torch==2.13.0 --index-url ..." on a GPU box.
TORCH_SPEC ?= torch==2.13.0
PIP        := $(VENV)/bin/python -m pip
PYTEST_ARGS ?= -n 2

SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install install-dev chromium clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml setup.py featlab/probes/_moments.c $(VENV)/.torch
	$(PIP) install -q -e ".[data]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py featlab/probes/_moments.c $(VENV)/.torch
	$(PIP) install -q -e ".[dev,data,dask,slurm,xrfm]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/featlab demo

test: install-dev
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null

clean:
	rm -rf $(VENV) runs report .pytest_cache
