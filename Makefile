# Stratastream — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY        ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
# The CPU wheel of torch lies on the build machines' disk; pinning it here keeps
# pip from pulling a multi-GB CUDA build. GPU users: see README "GPU".
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help install system-deps run test test-faults lint bench bench-reference docs clean

help: ## Show this help (coloured on a terminal only)
	@if [ -t 1 ]; then c='\033[36m'; r='\033[0m'; else c=; r=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk -v c="$$c" -v r="$$r" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-12s%s %s\n", c, $$1, r, $$2}'

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11+ is required)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[trainer,test,bench,mlflow]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with all extras

system-deps: ## Install Debian tools the tests use as independent clients (kcat, prometheus, chromium)
	@missing=""; for b in kcat prometheus promtool chromium; do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q kcat prometheus chromium >/dev/null || \
	      { $$SUDO apt-get update -q >/dev/null && \
	        $$SUDO apt-get install -y -q kcat prometheus chromium >/dev/null; }; \
	  else echo "warning: apt-get not available; install kcat, prometheus, chromium yourself"; fi; \
	fi

run: install ## Run the embedded demo (broker, worker, producer, trainer) with a summary
	$(BIN)/python -m devtools demo

test: install system-deps ## Install, then run the whole test suite but the long fault runs (pytest exit 5 = no tests = failure)
	$(BIN)/python -m pytest -m "not long_fault" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

lint: install ## Ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-faults: install system-deps ## All fault-injection tests (tests/faults/) and every long fault run elsewhere: kill -9 loops, scale-out, full disk, corrupt state, log rewinds
	$(BIN)/python -m pytest tests/faults
	$(BIN)/python -m pytest -m long_fault tests --ignore=tests/faults

bench: install ## Run the benchmarks; results go to .run/bench/ (the tree stays clean)
	$(BIN)/python -m benchmarks.run

bench-reference: install ## Run the benchmarks and refresh the reference results in benchmarks/results/
	STRATA_BENCH_OUT=benchmarks/results $(BIN)/python -m benchmarks.run

docs: install ## Build the API reference from the docstrings into .run/apidocs/ (pdoc)
	PDOC_ALLOW_EXEC=1 $(BIN)/python -m pdoc -o .run/apidocs stratastream sampler drift \
	  snapshot_format trainer streamproc
	@echo "API reference: .run/apidocs/index.html"

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
