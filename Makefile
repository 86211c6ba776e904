# `make bench` and `make test` each set up everything on a fresh machine: the virtualenv, the
# package, and the packaged assets they need (fetched into $ALIGN_HOME, default ~/.cache/align).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.align-installed
# No model hub is reachable from the team machines: fail fast instead of waiting on timeouts.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

TEST_ASSETS := mobilenet_v2.imagenet1k_v1 efficientnet_lite0.imagenet all-minilm-l6-v2 \
               all-mpnet-base-v2 gemma-3-270m.q4_k_m spacy-en-core-web-md

.PHONY: install assets test test-unit bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

assets: $(STAMP)
	$(BIN)/align assets pull $(TEST_ASSETS)

test: assets
	ALIGN_REQUIRE_ASSETS=1 $(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

bench: assets
	$(BIN)/python benchmarks/encoders.py --output results/encoders.md

clean-venv:
	rm -rf $(VENV)
