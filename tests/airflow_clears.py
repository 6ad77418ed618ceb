"""Clears of task instances through Airflow's own functions, and resuming the cleared DagRun.

Shared by the DAG-level tests that prove what a user's Clear does (tests/integration,
tests/reliability). Everything goes through the metadata DB of the test session.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any


def clear(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> None:
    """Clear one task instance with Airflow's ``clear_task_instances`` (what the UI's Clear calls).

    A finished DagRun goes back to running, as the scheduler would take up a re-queued one.
    """
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
            .all()
        )
        assert len(tis) == 1, f"no task instance {task_id}[{map_index}] in {run_id}"
        clear_task_instances(tis, session, dag_run_state=DagRunState.RUNNING)


def resume(dag: Any, run_id: str) -> str:
    """Run a cleared DagRun to its end with the loop ``dag.test()`` uses; return its final state."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=run_id).one()
        run.dag = scheduler_dag
        deadline = time.monotonic() + 120
        while run.state == DagRunState.RUNNING and time.monotonic() < deadline:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in run.get_task_instances(state=[TaskInstanceState.SCHEDULED], session=session):
                with contextlib.suppress(Exception):  # dag.test() logs and goes on the same way
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        return str(run.state)


def clear_number(dag_id: str, run_id: str) -> int:
    """Return the DagRun's ``clear_number`` (raised by every Clear of any of its task instances)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one().clear_number
