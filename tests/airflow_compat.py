"""The Airflow internals the DAG-level tests inspect, for every supported Airflow (2.11, 3.0-3.3).

The tests' only branch point on the Airflow version (the provider's is
``airflow_provider_ice/_compat.py``): where the metadata DB keeps XComs and asset (dataset) events,
where ``dag.test()`` runs deferred triggers inline, and what it calls the logical date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_ice._compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS, AIRFLOW_VERSION

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.11 and 3.0
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

try:
    from airflow.sdk.io import attach as attach_filesystem
except ImportError:  # Airflow 2.11
    from airflow.io.store import attach as attach_filesystem  # type: ignore[no-redef]

AIRFLOW = ".".join(map(str, AIRFLOW_VERSION))

if AIRFLOW_V_3_0_PLUS:
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel as XComRow
else:
    from airflow.models.dataset import DatasetEvent as AssetEvent  # type: ignore[no-redef]
    from airflow.models.xcom import XCom as XComRow  # type: ignore[no-redef]


def needs_task_state_store() -> pytest.MarkDecorator:
    """Skip a test that needs the task state store, naming the feature and the version."""
    return pytest.mark.skipif(
        not AIRFLOW_V_3_3_PLUS, reason=f"the task state store needs Airflow >= 3.3 (this is {AIRFLOW})"
    )


def run_dag(dag: Any, *, logical_date: datetime | None = None, run_conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()``; Airflow 2 calls the logical date ``execution_date``.

    Airflow 2's ``dag.test()`` does not write the DAG to the metadata DB, where the DAG processor of a
    deployment would have registered its datasets; without them no dataset event is recorded.
    """
    # Only passed when given: Airflow 3.3 reads an explicit None as "a run without a logical date".
    dated = (
        {}
        if logical_date is None
        else {"logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date": logical_date}
    )
    if not AIRFLOW_V_3_0_PLUS:
        dag.sync_to_db()
    return dag.test(run_conf=run_conf, **dated)


def task_output(capfd: pytest.CaptureFixture[str]) -> str:
    """What tasks printed under ``dag.test()``: Airflow 3 logs tasks to stdout, Airflow 2 to stderr."""
    captured = capfd.readouterr()
    return captured.out + captured.err


def dag_test_module() -> Any:
    """The module whose ``_run_inline_trigger`` ``dag.test()`` calls for a deferred task."""
    import airflow.models.dag as core_dag

    try:
        import airflow.sdk.definitions.dag as sdk_dag
    except ImportError:  # Airflow 2
        return core_dag
    return sdk_dag if hasattr(sdk_dag, "_run_inline_trigger") else core_dag


def wrap_inline_trigger(monkeypatch: pytest.MonkeyPatch, wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Route ``dag.test()``'s inline trigger runs through ``wrapper(original, trigger, *rest)``."""
    module = dag_test_module()
    original = module._run_inline_trigger

    def patched(trigger: Any, *rest: Any) -> Any:
        return wrapper(original, trigger, *rest)

    monkeypatch.setattr(module, "_run_inline_trigger", patched)
    return original


def xcom_rows(session: Any, dag_id: str, run_id: str) -> list[Any]:
    """The XCom rows of one DAG run."""
    return session.query(XComRow).filter(XComRow.dag_id == dag_id, XComRow.run_id == run_id).all()


def xcom_value(row: Any) -> Any:
    """The deserialized value of an XCom row (Airflow 2's XCom rows deserialize when loaded)."""
    if AIRFLOW_V_3_0_PLUS:
        return XComRow.deserialize_value(row)
    return row.value


def asset_events(session: Any, dag_id: str, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """``(uri, extra)`` of every asset (Airflow 2: dataset) event a DAG run emitted."""
    rows = session.query(AssetEvent).filter_by(source_dag_id=dag_id, source_run_id=run_id)
    target = "asset" if AIRFLOW_V_3_0_PLUS else "dataset"
    return [(getattr(event, target).uri, dict(event.extra or {})) for event in rows]


__all__ = [
    "AIRFLOW",
    "AIRFLOW_V_3_0_PLUS",
    "DagBag",
    "XComRow",
    "asset_events",
    "attach_filesystem",
    "dag_test_module",
    "needs_task_state_store",
    "run_dag",
    "task_output",
    "wrap_inline_trigger",
    "xcom_rows",
    "xcom_value",
]
