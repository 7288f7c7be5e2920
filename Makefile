# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first, pinned, so that installing the project does not pick another torch. Which build pip
# installs is up to its configuration: from plain PyPI on Linux x86_64, torch==2.13.0 is the CUDA build (with the
# nvidia-* packages). TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only build instead; empty
# by default (no --index-url).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_PIP_ARGS = $(if $(TORCH_INDEX), --index-url $(TORCH_INDEX),)
STAMP  := $(VENV)/.glinker-installed
PYTEST_ARGS ?=

.PHONY: demo cluster-demo test setup clean reference-venv docs

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@echo "installing $(TORCH) (from plain PyPI the CUDA build: several GB; pip shows its progress)"
	$(PIP) install --progress-bar on "$(TORCH)"$(TORCH_PIP_ARGS)
	$(PIP) install -q -e ".[dev,sql]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

cluster-demo: $(STAMP)
	$(PY) examples/cluster_demo.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The reference gliner library in its own venv, for conformance goldens and side-by-side benchmarks.
REF_VENV ?= .venv-gliner
reference-venv: $(REF_VENV)/.installed
$(REF_VENV)/.installed:
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q --upgrade pip
	$(REF_VENV)/bin/python -m pip install -q "$(TORCH)"$(TORCH_PIP_ARGS)
	$(REF_VENV)/bin/python -m pip install -q gliner==0.2.29 psutil
	touch $@

docs: $(STAMP)
	$(PY) -m glinker.pipeline.reference docs/yaml-reference.md
	$(PY) -m glinker.model.train.reference docs/training.md

clean:
	rm -rf $(VENV) $(REF_VENV) build dist *.egg-info
