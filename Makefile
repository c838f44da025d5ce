# The README's two commands: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench schemas clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/dooralert dev $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/pipeline.py

schemas: $(BIN)/.installed
	$(BIN)/python -m schemas.generate

clean:
	rm -rf $(VENV) .dooralert
