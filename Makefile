# Every target creates and uses .venv/ at the root; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test check bench api-fuzz format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,check,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/rostersync demo

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; it is
# installed here when missing (Playwright's own browser download is never used).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: $(STAMP) | $(CHROMIUM)
	$(BIN)/python -m pytest -q -n 2 tests

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && \
	      $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/common/rostersync functions
	$(BIN)/cfn-lint template.yaml infra/*.yaml
	$(BIN)/python scripts/check_asl.py statemachines/*.asl.json

# schemathesis against the served OpenAPI document: no request may get a 5xx
# (also part of `make test`).
api-fuzz: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration/test_api_schema.py

# rostersync sync and serve as a user runs them, on generated districts (BENCH_SIZES
# students; add 1000000 for the largest): see docs/benchmarks.md.
BENCH_SIZES ?= 10000 100000
BENCH_SERVE_STUDENTS ?= 100000
bench: $(STAMP)
	$(BIN)/python -u bench/bench_sync.py --sizes $(BENCH_SIZES)
	$(BIN)/python -u bench/bench_serve.py --students $(BENCH_SERVE_STUDENTS)
	$(BIN)/python -u bench/match_quality.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
