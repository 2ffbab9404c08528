# The commands people type. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
# The CPU build keeps installs small; choose another torch (a CUDA build) here.
TORCH_SPEC ?= torch==2.13.0
OUT ?= out
RUNNER ?= DirectRunner

PY := $(VENV)/bin/python
STAMP := $(VENV)/.stylefix-installed

.PHONY: install run test lint bench train-default sample-catalog clean

install: $(STAMP)

# infra/constraints.txt pins every direct dependency: tests, laptops and the
# Dataflow worker image run the same versions.
$(STAMP): pyproject.toml infra/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c infra/constraints.txt "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -c infra/constraints.txt -e ".[test]"
	touch $(STAMP)

sample-catalog: $(STAMP)
	$(PY) -m stylefix_core.sample_catalog $(OUT)/sample_catalog

run: sample-catalog
	$(VENV)/bin/stylefix run --input $(OUT)/sample_catalog --output $(OUT)/run --runner $(RUNNER)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check stylefix_core pipelines tests infra
	$(VENV)/bin/ruff format --check stylefix_core pipelines tests infra

bench: $(STAMP)
	$(PY) -m bench.run

train-default: $(STAMP)
	$(VENV)/bin/stylefix train default stylefix_core/default_bundle

clean:
	rm -rf $(OUT) .pytest_cache
