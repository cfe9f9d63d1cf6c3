# Tether: `make demo` sets everything up and runs a working demo;
# `make test` sets everything up and runs the whole test suite.
# Both need only Python >= 3.11, node/npm and apt; whatever else is missing is
# installed (Debian packages with apt-get, Python packages into .venv).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# The steps of a setup depend on each other's order.
.NOTPARALLEL:

VENV := .venv
PY   := $(VENV)/bin/python
PIP  := $(PY) -m pip
LOCK := requirements-test.lock

# Debian packages the test suite needs (the demo needs none beyond Python/node).
TEST_DEB := chromium openssh-client openssh-server xvfb tmux procps

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: help demo test setup-demo setup-test sysdeps-demo sysdeps-test venv \
        web-deps install-demo install-test lock clean clean-demo

help:
	@echo "make demo        set up, start a broker on https://127.0.0.1:8443/ and a client here"
	@echo "make test        set up, then ruff, mypy and the whole pytest suite"
	@echo "make venv        create $(VENV) (Python >= 3.11)"
	@echo "make lock        regenerate $(LOCK) with pip-compile (LOCK_FLAGS=--upgrade to bump)"
	@echo "make clean       remove $(VENV), web/node_modules, build output and caches"
	@echo "make clean-demo  remove demo-data/ (the demo's CA, accounts and recordings)"

demo: setup-demo
	bash scripts/demo.sh

test: setup-test
	bash scripts/test.sh

setup-demo: sysdeps-demo venv web-deps install-demo
setup-test: sysdeps-test venv web-deps install-test

sysdeps-demo:
	bash scripts/sysdeps.sh

sysdeps-test:
	bash scripts/sysdeps.sh $(TEST_DEB)

venv:
	bash scripts/venv.sh

web-deps:
	bash scripts/web-deps.sh

# The demo needs only the runtime dependencies, at the versions the lock pins.
# pip always rebuilds and reinstalls a local directory, so the installed
# package (with the front-end assets the build hook copies) is current.
install-demo: venv web-deps
	$(PIP) install -q -c $(LOCK) .

# Test: every pinned dependency first, then the package itself, non-editable,
# rebuilt on every run; `pip check` catches a dependency missing from the lock.
install-test: venv web-deps
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps --force-reinstall .
	$(PIP) check

# pip-compile from pip-tools (LOCK_TOOL=path to override; not PIP_*, which pip
# reads as its own options): the one on PATH, else one installed on demand in
# $(VENV)/.tools. Index and find-links options of this machine's pip config
# are not written into the lock.
LOCK_TOOL ?= $(or $(shell command -v pip-compile 2>/dev/null),$(VENV)/.tools/bin/pip-compile)
LOCK_FLAGS ?=

lock: $(LOCK_TOOL)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOL) --quiet --strip-extras \
	    --extra test --extra ssh --extra fast \
	    --no-emit-index-url --no-emit-find-links \
	    $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml
	@echo "wrote $(LOCK)"

$(VENV)/.tools/bin/pip-compile: | venv
	$(PY) -m venv $(VENV)/.tools
	$(VENV)/.tools/bin/pip install pip-tools

clean:
	rm -rf $(VENV) web/node_modules build dist .mypy_cache .ruff_cache .pytest_cache \
	    tether/broker/static tether/broker/templates
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

clean-demo:
	rm -rf demo-data
