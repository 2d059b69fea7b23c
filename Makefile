# Two commands do all the set-up: `make reproduce` and `make test` (each creates .venv first if needed).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= tiny
# Optional: a PyTorch wheel index for the torch build (e.g. https://download.pytorch.org/whl/cpu on a
# CPU-only laptop, to avoid PyPI's multi-GB CUDA build). Empty: PyPI's build (CUDA on Linux).
TORCH_INDEX ?=
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements.lock)
# The installer of the lock: uv (pinned, put into the venv by pip; it installs the lock with pip's
# configuration, translated by tools/uv_flags.py: 30 s instead of 110 s here), or INSTALLER=pip.
# Without uv (it cannot be installed, or it fails), pip installs the lock.
INSTALLER ?= uv
UV_VERSION := 0.13.9
# The public CMKP files: ../shared/data/cmkp when it is there (CI), else downloaded on first use.
CMKP_DIR ?= $(wildcard $(abspath ../shared/data/cmkp))
ifneq ($(CMKP_DIR),)
export MMKP_CMKP_DIR ?= $(CMKP_DIR)
endif
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-fast reproduce lab lock bench clean help nb-text nb-sync

help:
	@echo "make reproduce   run every notebook on profile $(PROFILE) -> results/$(PROFILE)/ (PROFILE=paper-qwen2vl-2b on a GPU)"
	@echo "make test        run the tests (unit, notebooks on the tiny profile)"
	@echo "make setup       create $(VENV) with the pinned environment (done by the two above when needed)"
	@echo "make lab         open the notebooks in JupyterLab with the project's kernel"
	@echo "make bench       the benchmark scripts (scoring speed, batched generation, overlap scale)"

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_INDEX)" ]; then $(PY) -m pip install --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); fi
	@if [ "$(INSTALLER)" = uv ] && $(PY) -m pip install -q uv==$(UV_VERSION); then \
	    cert="$$($(PY) tools/uv_flags.py --cert)"; if [ -n "$$cert" ]; then export SSL_CERT_FILE="$$cert"; fi; \
	    flags="$$($(PY) tools/uv_flags.py)"; \
	    echo "uv pip install --compile-bytecode $$flags -r requirements.lock; uv pip install --no-deps -e ."; \
	    { eval "$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode $$flags -r requirements.lock" \
	      && eval "$(VENV)/bin/uv pip install --python $(PY) --no-deps $$flags -e ."; } \
	    || { echo "uv failed: installing with pip" >&2; \
	         $(PY) -m pip install -r requirements.lock && $(PY) -m pip install --no-deps -e .; }; \
	else $(PY) -m pip install -r requirements.lock && $(PY) -m pip install --no-deps -e .; fi
	@touch $(STAMP)

# Two workers (pytest-xdist), one torch thread each (tests/conftest.py); the notebook tests on one of them.
TEST_WORKERS ?= 2
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow and not notebooks"

reproduce: setup
	$(VENV)/bin/mmkp-run --profile $(PROFILE)

# JupyterLab from $(VENV) (its python3 kernel is the project's), on 127.0.0.1:$(LAB_PORT), --allow-root when
# run as root; the command line is mmkp_helpers/lab.py's lab_command, which tests/test_browser.py also runs.
LAB_PORT ?= 8888
lab: setup
	$(PY) -m mmkp_helpers.lab --port $(LAB_PORT)

# Authoring: edit a notebook as jupytext percent text, then sync it back (the .ipynb stays the source
# of truth; `--update` keeps its metadata). NB is the notebook's stem, e.g. NB=03_sft_qlora.
nb-text: setup
	$(PY) -m jupytext --to py:percent notebooks/$(NB).ipynb -o notebooks/$(NB).py
	@echo "edit notebooks/$(NB).py, then: make nb-sync NB=$(NB)"

nb-sync: setup
	$(PY) -m jupytext --update --to ipynb notebooks/$(NB).py -o notebooks/$(NB).ipynb && rm notebooks/$(NB).py

bench: setup
	HF_HUB_OFFLINE=1 $(PY) -m mmkp_helpers.bench.score_speed
	HF_HUB_OFFLINE=1 $(PY) -m mmkp_helpers.bench.batch_generation

# Regenerate the exact pins from pyproject.toml's ranges in a scratch environment.
lock:
	rm -rf /tmp/mmkp-lock && $(PYTHON) -m venv /tmp/mmkp-lock
	@if [ -n "$(TORCH_INDEX)" ]; then /tmp/mmkp-lock/bin/pip install --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); fi
	/tmp/mmkp-lock/bin/pip install -e '.[test,lab]'
	{ sed -n '1,/^[^#]/{/^#/p}' requirements.lock; /tmp/mmkp-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//;s/+cu[0-9]*$$//'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .cache .pytest_cache
