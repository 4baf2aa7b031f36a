# zhida — two commands for a newcomer: `make demo` and `make test`.
# Every target creates .venv and installs what it needs first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BUF_VERSION := 1.75.0
BUF    := .tools/node_modules/.bin/buf

.PHONY: sysdeps demo test test-unit lint proto proto-check proto-lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[dev]'
	@touch $@

# System packages from Debian: a CJK font for seal images and licence PDFs;
# poppler-utils (pdfsig) and libnss3-tools (certutil), the independent PDF
# signature verifier the signing integration tests run.
SYS_PACKAGES := fonts-wqy-microhei poppler-utils libnss3-tools
sysdeps:
	@if fc-list :lang=zh 2>/dev/null | grep -q . && command -v pdfsig >/dev/null \
	  && command -v certutil >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(SYS_PACKAGES) (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PACKAGES) >/dev/null; \
	else echo "please install: sudo apt-get install $(SYS_PACKAGES)"; exit 1; fi

demo: $(STAMP)
	$(VENV)/bin/zhida demo

test: $(STAMP)
	$(PY) scripts/gen_protos.py --check
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP) proto-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) scripts/gen_protos.py

proto-check: $(STAMP)
	$(PY) scripts/gen_protos.py --check

# buf (STANDARD lint rules) comes from the npm registry as @bufbuild/buf.
$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

proto-lint: $(BUF)
	$(BUF) lint

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .tools .zhida .pytest_cache .mypy_cache .ruff_cache *.egg-info
