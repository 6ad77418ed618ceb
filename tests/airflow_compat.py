"""The Airflow internals the DAG-level tests inspect, for every supported Airflow (2.11, 3.0-3.3).

The tests' only branch point on the Airflow version (the provider's is
``airflow_provider_ice/_compat.py``): where the metadata DB keeps XComs and asset (dataset) events,
where ``dag.test()`` runs tasks and deferred triggers inline, what it calls the logical date, and
what ``clear_task_instances`` needs to find the cleared task.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_ice._compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_VERSION,
)

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.11 and 3.0
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

try:
    from airflow.sdk.io import attach as attach_filesystem
except ImportError:  # Airflow 2.11
    from airflow.io.store import attach as attach_filesystem  # type: ignore[no-redef]

AIRFLOW = ".".join(map(str, AIRFLOW_VERSION))
#: Every Clear raises ``dag_run.clear_number`` from Airflow 3.2 on; before, only one re-queuing a
#: finished DagRun does.
EVERY_CLEAR_COUNTED = AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel as XComRow
else:
    from airflow.models.dataset import DatasetEvent as AssetEvent  # type: ignore[no-redef]
    from airflow.models.xcom import XCom as XComRow  # type: ignore[no-redef]


def needs_airflow(minimum: tuple[int, int], feature: str) -> pytest.MarkDecorator:
    """Skip a test of ``feature`` below Airflow ``minimum``, naming the feature and both versions."""
    return pytest.mark.skipif(
        minimum > AIRFLOW_VERSION,
        reason=f"{feature} needs Airflow >= {'.'.join(map(str, minimum))} (this is {AIRFLOW})",
    )


def needs_task_state_store() -> pytest.MarkDecorator:
    """Skip a test that needs the task state store, naming the feature and the version."""
    return needs_airflow((3, 3), "the task state store")


def run_dag(dag: Any, *, logical_date: datetime | None = None, run_conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()``; Airflow 2 calls the logical date ``execution_date``.

    Airflow 2's ``dag.test()`` does not write the DAG to the metadata DB, where the DAG processor of a
    deployment would have registered its datasets; without them no dataset event is recorded. It adds
    its stdout handler to the shared task logger only once per process, bound to the ``sys.stdout``
    of the test that ran first: dropped here, so that each test's ``capfd`` sees its own task logs.
    """
    # Only passed when given: Airflow 3.3 reads an explicit None as "a run without a logical date".
    dated = (
        {}
        if logical_date is None
        else {"logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date": logical_date}
    )
    if not AIRFLOW_V_3_0_PLUS:
        dag.sync_to_db()
        task_log = logging.getLogger("airflow.task")
        for handler in [h for h in task_log.handlers if type(h) is logging.StreamHandler]:
            task_log.removeHandler(handler)
    elif not AIRFLOW_V_3_1_PLUS:
        _register_dag(dag)
    return dag.test(run_conf=run_conf, **dated)


def _register_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB as a deployment's DAG processor does (Airflow 3.0).

    Airflow 3.1+'s ``dag.test()`` does this itself; 3.0's does not, and without it a task whose
    outlets name an asset fails (the asset is not active) and a Clear finds no serialized DAG to
    read the task's ``retries`` from.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagBag

    DagBundlesManager().sync_bundles_to_db()
    if dag.relative_fileloc is None:  # what DagBag sets for a file outside any bundle
        dag.relative_fileloc = dag.fileloc
    bag = DagBag(include_examples=False, collect_dags=False)
    bag.bag_dag(dag)
    bag.sync_to_db("dags-folder", None)


def task_output(capfd: pytest.CaptureFixture[str]) -> str:
    """What tasks printed under ``dag.test()``: Airflow 3 logs tasks to stdout, Airflow 2 to stderr.

    As plain text: Airflow 3.0 renders a task's exception with colours, which split ``key=value``.
    """
    captured = capfd.readouterr()
    return plain_text(captured.out + captured.err)


def plain_text(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI_ESCAPE.sub("", text)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: ``dag.test()``'s in-process comms (``InProcessSupervisorComms.send``) log every message to the
#: supervisor at DEBUG, including the ``MaskSecret`` request that registers a secret for masking
#: (Airflow 3.0 prints those DEBUG lines with the task's output). The real supervisor omits that
#: body ("body omitted"), so these lines exist only under ``dag.test()``.
MASKING_ECHO = "msg=MaskSecret(value="


def without_masking_echo(text: str) -> tuple[str, int]:
    """``text`` without ``dag.test()``'s echo of masking requests, and how many lines that was."""
    lines = text.splitlines()
    kept = [line for line in lines if not ("Sending request" in line and MASKING_ECHO in line)]
    return "\n".join(kept), len(lines) - len(kept)


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


def _run_task_parameters() -> Any:
    return inspect.signature(dag_test_module()._run_task).parameters


def before_each_task_run(monkeypatch: pytest.MonkeyPatch, action: Callable[[Any], None]) -> None:
    """Call ``action(ti)`` just before ``dag.test()`` (or :func:`run_task`) runs a task instance."""
    module = dag_test_module()
    original = module._run_task

    @functools.wraps(original)  # keeps the signature run_task() and scheduler_dag() read
    def running(*, ti: Any, **kwargs: Any) -> Any:
        action(ti)
        return original(ti=ti, **kwargs)

    monkeypatch.setattr(module, "_run_task", running)


def scheduler_dag(dag: Any) -> Any:
    """The DAG a DagRun resumed outside ``dag.test()`` schedules with, as ``dag.test()`` sets it.

    Airflow 3.1+ schedules with the serialized DAG; Airflow 2.11 and 3.0 with the DAG itself.
    """
    if "task" not in _run_task_parameters():
        return dag
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow 3.1 calls it SerializedDAG
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def run_task(ti: Any, task: Any, session: Any) -> None:
    """Run one scheduled task instance the way ``dag.test()`` does, deferred triggers inline."""
    parameters = _run_task_parameters()
    kwargs: dict[str, Any] = {"ti": ti}
    if "task" in parameters:
        kwargs["task"] = task
    else:
        ti.task = task
    if "run_triggerer" in parameters:
        kwargs["run_triggerer"] = True
    if "inline_trigger" in parameters:  # Airflow 2
        kwargs.update(inline_trigger=True, session=session)
    dag_test_module()._run_task(**kwargs)


def clear_task_instances(tis: list[Any], session: Any, dag: Any, dag_run_state: Any) -> None:
    """Airflow's ``clear_task_instances``, which raises ``max_tries`` to ``try_number + retries``.

    Airflow 2 finds the task's ``retries`` in the DAG it is given (the UI's Clear passes it) or else
    in the serialized DAG; ``dag.test()`` serializes none, so the DAG is passed where it is accepted.
    """
    from airflow.models.taskinstance import clear_task_instances as clear_tis

    given = {"dag": dag} if "dag" in inspect.signature(clear_tis).parameters else {}
    clear_tis(tis, session, dag_run_state=dag_run_state, **given)


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
    "EVERY_CLEAR_COUNTED",
    "DagBag",
    "XComRow",
    "asset_events",
    "attach_filesystem",
    "before_each_task_run",
    "clear_task_instances",
    "dag_test_module",
    "needs_airflow",
    "needs_task_state_store",
    "plain_text",
    "run_dag",
    "run_task",
    "scheduler_dag",
    "task_output",
    "without_masking_echo",
    "wrap_inline_trigger",
    "xcom_rows",
    "xcom_value",
]
