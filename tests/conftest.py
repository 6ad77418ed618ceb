"""Suite-wide set-up: an isolated AIRFLOW_HOME (set before airflow is imported) and a DB on demand.

``dag.test()`` in Airflow 3.3 finds the DAG again in the DAGs folder (it serialises it from there),
so a DAG under test must live in a file there: the DAGs folder is a temporary directory that links
``example_dags/`` and ``tests/dags/``. Put test-only DAG files in ``tests/dags/``.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="ice-airflow-home-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
(_DAGS / "example_dags").symlink_to(_REPO / "example_dags", target_is_directory=True)
(_DAGS / "test_dags").symlink_to(_REPO / "tests" / "dags", target_is_directory=True)

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
if version("apache-airflow").startswith("2."):
    # Airflow 2's unit-test mode picks the LocalExecutor, which refuses SQLite (3.x has no such check).
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "SequentialExecutor")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB, for ``dag.test()``; created once per test session."""
    from airflow.utils.db import initdb

    initdb()
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak``: the larger fault-injection soak in tests/reliability (``make soak``)."""
    parser.addoption("--soak", action="store_true", default=False, help="run the reliability soak")
