# Two entry points, both idempotent: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/loyalty-demo $(ARGS)

test: $(STAMP)
	./scripts/install-chromium
	PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/check

clean:
	rm -rf $(VENV) .demo-data .mypy_cache .pytest_cache .ruff_cache .hypothesis
