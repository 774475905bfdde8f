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
# pytest-xdist workers for `make test` (each starts its own Slurm test clusters; a test file stays on one
# worker); PYTEST_XDIST= runs in one process
PYTEST_XDIST ?= -n 2 --dist loadfile
# The Slurm test matrix (docs/testing.md): Debian's slurm-wlm plus Slurm 25.11.7 under SLURM_25_11,
# from the files in SLURM_VENDOR (prebuilt for Debian 12 amd64, else built from source; pyslurm wheel).
SLURM_VENDOR ?= ../shared/vendor
SLURM_25_11 ?= /opt/slurm-25.11
# `make slurm-check SLURM_SRC=slurm-26.05.x.tar.bz2`: build that Slurm into SLURM_CHECK_PREFIX, run the Slurm tests on it.
SLURM_SRC ?=
SLURM_CHECK_PREFIX ?= /opt/slurm-check
SLURM_TESTS ?= tests/slurm tests/slurm_integration tests/scheduler/test_jobcomp_live.py tests/topology/test_export.py
MATRIX := .ci/slurm-matrix

.PHONY: demo test sysdeps sysdeps-test slurm-25.11 pyslurm slurm-check bench clean

# -- system packages (only what is missing is installed) ---------------------
sysdeps:
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends \
	      python3 python3-venv python3-dev gcc make ca-certificates; }

sysdeps-test: sysdeps
	@for p in slurmctld:slurm-wlm munged:munge slurmrestd:slurmrestd shellcheck:shellcheck chromium:chromium chromedriver:chromium-driver lua5.4:lua5.4 systemd-analyze:systemd slurmdbd:slurmdbd mariadbd:mariadb-server \
	  bunzip2:bzip2 unxz:xz-utils unzip:unzip; do \
	  command -v $${p%%:*} >/dev/null || missing="$$missing $${p##*:}"; done; \
	for p in slurm-wlm-jwt-plugin python3-simgrid; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing; fi

# -- Slurm 25.11.7 (second tier of the Slurm tests) and pyslurm built against it -----------------
slurm-25.11: sysdeps-test
	$(MATRIX) slurm-25.11 $(SLURM_VENDOR) $(SLURM_25_11)
	$(MATRIX) mysql-plugin $(SLURM_VENDOR) $(SLURM_25_11)

pyslurm: slurm-25.11 $(VENV)/.stamp-test
	$(MATRIX) pyslurm $(SLURM_VENDOR) $(SLURM_25_11) $(PY)

# any Slurm source (tarball or directory), e.g. 26.05 from `apt-get source slurm-wlm` (sid): not in `make test`
slurm-check: sysdeps-test $(VENV)/.stamp-test
	@test -n "$(SLURM_SRC)" || { echo "usage: make slurm-check SLURM_SRC=<Slurm source tarball or directory>"; exit 2; }
	$(MATRIX) build $(SLURM_SRC) $(SLURM_CHECK_PREFIX)
	FABRIC_SLURM_PREFIXES=$(SLURM_CHECK_PREFIX) FABRIC_SLURM_TIERS=$$($(MATRIX) version $(SLURM_CHECK_PREFIX)) \
	  SLURM_VENDOR=$(SLURM_VENDOR) $(PY) -m pytest $(SLURM_TESTS) $(PYTEST_ARGS)

# -- virtual environment -------------------------------------------------------
$(VENV)/.stamp-base: pyproject.toml | sysdeps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[mpi,torch,test]"
	# Debian's python3-simgrid module, linked alone into the venv (not all of dist-packages)
	$(PY) -c 'import os, sysconfig as s; n = "simgrid" + s.get_config_var("EXT_SUFFIX"); \
	  src, dst = "/usr/lib/python3/dist-packages/" + n, os.path.join(s.get_path("purelib"), n); \
	  os.path.lexists(dst) and os.remove(dst); os.symlink(src, dst)'
	touch $@

# -- the main job on the built-in default cluster ----------------------------
demo: $(VENV)/.stamp-base
	$(PY) -m fabric_hpc.demo --out $(OUT)

# -- the whole test suite, real components required when FABRIC_REQUIRE_REAL=1
test: sysdeps-test $(VENV)/.stamp-test slurm-25.11 pyslurm
	SLURM_VENDOR=$(SLURM_VENDOR) FABRIC_SLURM_PREFIXES=$(SLURM_25_11) $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks --all

clean:
	rm -rf $(VENV) $(OUT) test-artifacts .pytest_cache .hypothesis

# -- the prepared GPU check (issue 16; docs/benchmarks.md, "When a GPU is lent") ---------------
# No prerequisites: on the lent machine there is no venv (make gpu-check PY=python3
# GPU_CHECK_ARGS="--wheels .whl"); here, GPU_CHECK_ARGS=--tiny rehearses it on the CPU.
GPU_CHECK_ARGS ?=
.PHONY: gpu-check gpu-wheels
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m benchmarks.gpu_check --out $(OUT)/gpu-check $(GPU_CHECK_ARGS)

# the wheels the check carries (benchmarks/gpu_check/wheels.txt), into the ignored .whl/
gpu-wheels:
	$(PY) -m benchmarks.gpu_check.wheels download .whl
