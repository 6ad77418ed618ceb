"""Suite-wide set-up: an isolated AIRFLOW_HOME (set before airflow is imported) and a DB on demand."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="ice-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB, for ``dag.test()``; created once per test session."""
    from airflow.utils.db import initdb

    initdb()
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
