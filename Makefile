# Two commands a newcomer needs: `make run` and `make test`. Both create .venv on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast fuzz lint bench chromium wrk clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# GrowthBook's stats engine, which the tests check the experiment report against. Its metadata
	# pins numpy < 2 and pandas < 2 (only its DataFrame runner needs them); the classes the tests
	# use run on what is installed, so it goes in without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps 'gbstats==0.8.0'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install refreshd with its test tools

run: $(STAMP)  ## start the service on 127.0.0.1:8080 with the embedded Valkey (data in ./var)
	$(BIN)/refreshd serve

chromium:  ## the system Chromium the console's browser tests drive (installed when missing and possible)
	@.ci/chromium

wrk:  ## the wrk load generator the capacity bench and its script test use (installed when missing and possible)
	@.ci/wrk

test: $(STAMP) chromium wrk  ## run the whole suite (slow simulations included)
	$(BIN)/python -m pytest

test-fast: $(STAMP) chromium wrk  ## the suite without runs marked slow
	$(BIN)/python -m pytest -m 'not slow'

fuzz: $(STAMP)  ## fuzz every route from /openapi.json with a large budget (REFRESHD_FUZZ_EXAMPLES, default 500), and stateful runs through its links (REFRESHD_FUZZ_STATEFUL, default 200)
	REFRESHD_FUZZ_EXAMPLES=$${REFRESHD_FUZZ_EXAMPLES:-500} REFRESHD_FUZZ_STATEFUL=$${REFRESHD_FUZZ_STATEFUL:-200} $(BIN)/python -m pytest tests/fuzz --timeout=1800

lint: $(STAMP)  ## ruff + mypy on every package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) wrk  ## micro-benchmarks, capacity with wrk (installed when missing and possible) and open-model load tests; prints ratios measured in one run
	$(BIN)/python -m load bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
