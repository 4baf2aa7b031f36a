# zhida — two commands for a newcomer: `make demo` and `make test`.
# Every target creates .venv and installs what it needs first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-unit lint proto proto-check bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[dev]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/zhida demo

test: $(STAMP)
	$(PY) scripts/gen_protos.py --check
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) scripts/gen_protos.py

proto-check: $(STAMP)
	$(PY) scripts/gen_protos.py --check

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .zhida .pytest_cache .mypy_cache .ruff_cache *.egg-info
