"""The deployment suite's own DAG: one call waited for on the worker, to be killed mid-wait."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator

with DAG(
    dag_id="ice_deploy_on_kill",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["ice", "deployment-test"],
) as dag:
    IceGenerateAIAgentCallOperator(
        task_id="call_and_wait",
        agent_id="deploy-on-kill",
        user_data={"dag_run": "{{ run_id }}"},
        wait_for_completion=True,
        deferrable=False,  # waits in the worker, so a SIGTERM reaches on_kill
        poll_interval=1,
        stop_on_kill=True,
        retries=0,
    )
