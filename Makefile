# The commands people type. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
# Installed first, so that pip takes a CPU build where one is offered (README).
TORCH_SPEC ?= torch==2.13.0
OUT ?= out
RUNNER ?= DirectRunner
# e.g. make bench BENCH_ARGS="--quick --figures throughput,flops"
BENCH_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.stylefix-installed

.PHONY: install chromium run test lint bench eval train-default sample-catalog clean

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

test: $(STAMP) chromium
	$(PY) -m pytest -q

# The report's browser test needs Debian's Chromium. Installed where we are root
# with apt-get; anywhere else this says why and the test skips, never fails.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium; the browser test will be skipped"; \
	else \
		echo "chromium is absent and needs root with apt-get to install; the browser test will be skipped"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check stylefix_core pipelines bench tests infra
	$(VENV)/bin/ruff format --check stylefix_core pipelines bench tests infra

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

eval: $(STAMP)
	$(PY) -m bench.quality

train-default: $(STAMP)
	$(VENV)/bin/stylefix train default --out stylefix_core/default_bundle --device cpu

clean:
	rm -rf $(OUT) .pytest_cache
