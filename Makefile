# The two commands: `make demo` and `make test`. Both create .venv and install into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := constraints.txt requirements-dev.txt proto/pyproject.toml runtime/pyproject.toml frames/pyproject.toml $(wildcard services/*/pyproject.toml)

.PHONY: install demo test bench asyncapi clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	touch $(STAMP)

demo: install
	$(BIN)/framecast up

test: install
	$(BIN)/ruff check proto runtime frames services tests bench conftest.py
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.plots

asyncapi: install
	$(BIN)/framecast proto asyncapi --output docs/asyncapi.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
