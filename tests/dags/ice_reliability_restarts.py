"""Test-only DAGs: a call operator that waits synchronously and is killed mid-wait by its timeout.

``execution_timeout`` is Airflow's own kill of a running task (SIGALRM in the task process, then
``on_kill``); the retry (``retry_delay=0``) must adopt the instance the killed try placed. One DAG
stops the instance on kill (``stop_on_kill=True``), the other leaves it running.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator

#: Longer than placing the call takes even on a loaded 2-core CI machine (so the kill lands in the
#: wait, not in GenerateAIAgentCall), shorter than the emulated call the tests configure.
KILL_AFTER = timedelta(seconds=3)

for dag_id, stop_on_kill in (
    ("ice_reliability_kill_wait_keep", False),
    ("ice_reliability_kill_wait_stop", True),
):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        default_args={"retries": 2, "retry_delay": timedelta(0)},
        params={"agent_id": "reliability-restarts"},
        tags=["ice", "test"],
    ) as dag:
        IceGenerateAIAgentCallOperator(
            task_id="place_call",
            agent_id="{{ params.agent_id }}",
            wait_for_completion=True,
            deferrable=False,
            poll_interval=0.1,
            stop_on_kill=stop_on_kill,
            execution_timeout=KILL_AFTER,
        )
    globals()[dag_id] = dag
