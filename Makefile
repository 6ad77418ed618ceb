# Every target creates or reuses its own virtual environment in .venv; only python3 and pip are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := True

.PHONY: venv demo test lint typecheck unit compat compat-ci bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_dags.demo

lint: $(STAMP)
	$(BIN)/ruff check airflow_provider_ice tests example_dags benchmarks scripts
	$(BIN)/ruff format --check airflow_provider_ice tests example_dags benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Airflow matrix: the latest patch of each supported minor, each in .venv-compat/<minor> (uv).
COMPAT_VERSIONS ?= 2.11 3.0 3.1 3.2 3.3
# CI runs the oldest and the newest of the matrix on every run; `make compat` runs all of it. The
# newest's unit and integration suites are the ones `make unit` has just run in .venv (the same
# Airflow release), so CI adds only its example-DAG leg.

compat: $(STAMP)
	$(PYTHON) scripts/compat_matrix.py --versions "$(COMPAT_VERSIONS)"

compat-ci: $(STAMP)
	$(PYTHON) scripts/compat_matrix.py --versions 2.11
	$(PYTHON) scripts/compat_matrix.py --versions 3.3 --legs dags

test: lint typecheck unit compat-ci

soak: $(STAMP)
	$(BIN)/python -m pytest tests/reliability --soak $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-compat .airflow .mypy_cache .ruff_cache
