"""Clears of task instances through Airflow's own functions, and resuming the cleared DagRun.

Shared by the DAG-level tests that prove what a user's Clear does (tests/integration,
tests/reliability). Everything goes through the metadata DB of the test session; what differs
between Airflow versions is in :mod:`tests.airflow_compat`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from tests.airflow_compat import clear_task_instances, run_task, scheduler_dag


def clear(dag: Any, run_id: str, task_id: str, map_index: int = -1) -> None:
    """Clear one task instance of ``dag`` with Airflow's ``clear_task_instances`` (the UI's Clear).

    A finished DagRun goes back to running, as the scheduler would take up a re-queued one.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag.dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
            .all()
        )
        assert len(tis) == 1, f"no task instance {task_id}[{map_index}] in {run_id}"
        clear_task_instances(tis, session, dag, DagRunState.RUNNING)


def resume(dag: Any, run_id: str) -> str:
    """Run a cleared DagRun to its end with the loop ``dag.test()`` uses; return its final state."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=run_id).one()
        run.dag = scheduler_dag(dag)
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
                    run_task(ti, dag.task_dict[ti.task_id], session)
        return str(run.state)


def clear_number(dag_id: str, run_id: str) -> int:
    """Return the DagRun's ``clear_number`` (raised by every Clear of any of its task instances)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one().clear_number
