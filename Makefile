# Two commands on a fresh machine (see README.md):
#   make demo   -- installs, then runs the main job
#   make test   -- installs, then lint, type check and the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export KIOSK_SHARED ?= $(abspath ../shared)

$(VENV)/.kiosk-installed: pyproject.toml packaging/install.sh
	bash packaging/install.sh $(VENV)

.PHONY: install lint test demo
install: $(VENV)/.kiosk-installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest
