# fabric-hpc: the two entry points are `make demo` and `make test` (see README.md).
# Both work as root on a fresh Debian 12 machine: they install what is missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FABRIC := $(VENV)/bin/fabric
OUT ?= out
# The CPU build of torch; a GPU site installs its CUDA build instead.
TORCH_SPEC ?= torch==2.13.0
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
PYTEST_ARGS ?=

.PHONY: demo test sysdeps sysdeps-test bench clean

# -- system packages (only what is missing is installed) ---------------------
sysdeps:
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends \
	      python3 python3-venv python3-dev gcc make ca-certificates; }

sysdeps-test: sysdeps
	@for p in slurmctld:slurm-wlm munged:munge slurmrestd:slurmrestd shellcheck:shellcheck chromium:chromium chromedriver:chromium-driver /usr/lib/python3/dist-packages/simgrid.cpython-311-x86_64-linux-gnu.so:python3-simgrid; do \
	  { command -v $${p%%:*} || test -e $${p%%:*}; } >/dev/null || missing="$$missing $${p##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing; fi

# -- virtual environment -------------------------------------------------------
$(VENV)/.stamp-base: pyproject.toml | sysdeps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[mpi,torch,test]"
	ln -sf /usr/lib/python3/dist-packages/simgrid.cpython-311-x86_64-linux-gnu.so "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/"
	touch $@

# -- the main job on the built-in default cluster ----------------------------
demo: $(VENV)/.stamp-base
	$(PY) -m fabric_hpc.demo --out $(OUT)

# -- the whole test suite, real components required when FABRIC_REQUIRE_REAL=1
test: sysdeps-test $(VENV)/.stamp-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks --all

clean:
	rm -rf $(VENV) $(OUT) test-artifacts .pytest_cache .hypothesis
