# The commands people type. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
# The CPU build keeps installs small; choose another torch (a CUDA build) here.
TORCH_SPEC ?= torch==2.13.0
OUT ?= out
RUNNER ?= DirectRunner
# e.g. make bench BENCH_ARGS="--quick --figures throughput,flops"
BENCH_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.stylefix-installed

.PHONY: install run test lint bench train-default sample-catalog clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

sample-catalog: $(STAMP)
	$(PY) -m stylefix_core.sample_catalog $(OUT)/sample_catalog

run: sample-catalog
	$(VENV)/bin/stylefix run --input $(OUT)/sample_catalog --output $(OUT)/run --runner $(RUNNER)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check stylefix_core pipelines bench tests
	$(VENV)/bin/ruff format --check stylefix_core pipelines bench tests

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

train-default: $(STAMP)
	$(VENV)/bin/stylefix train default stylefix_core/default_bundle

clean:
	rm -rf $(OUT) .pytest_cache
