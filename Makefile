# Two commands do all the set-up: `make demo` and `make test` (each creates .venv when missing).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lab lint setup

demo: $(STAMP)
	$(PY) -m dojo.train

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not notebook"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP)
	$(VENV)/bin/ruff check dojo tests benchmarks tools
	$(VENV)/bin/ruff format --check dojo tests benchmarks tools

setup: $(STAMP)

$(STAMP): pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh $(VENV)
	touch $(STAMP)
