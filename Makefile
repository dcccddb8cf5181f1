# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs, runs the main job
#   make test   same set-up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= small
DATA ?= data/$(PROFILE)
RUN ?= artifacts/$(PROFILE)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: venv demo test lint compare bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[all]" 2> >(grep -v "is ignored: it is neither" >&2)
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/cscnn data synth --profile $(PROFILE) --out $(DATA)
	$(BIN)/cscnn train --data $(DATA) --profile $(PROFILE) --variant cscnn --out $(RUN)/cscnn
	$(BIN)/cscnn evaluate --data $(DATA) --model $(RUN)/cscnn --out $(RUN)/metrics.json
	$(BIN)/cscnn embed --data $(DATA) --model $(RUN)/cscnn --out $(RUN)/embeddings

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

compare: venv
	$(BIN)/cscnn data synth --profile $(PROFILE) --out $(DATA)
	$(BIN)/cscnn compare --data $(DATA) --profile $(PROFILE) --seeds 3 --out docs/results.md

bench: venv
	$(BIN)/python benchmarks/train_throughput.py --profile $(PROFILE) --data $(DATA)

clean:
	rm -rf data artifacts .state
