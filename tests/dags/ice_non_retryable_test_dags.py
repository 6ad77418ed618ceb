"""Test-only DAG for tests/integration/test_non_retryable.py: failures no retry can fix, with retries set."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.operators.analytics import IceSessionAnalyticsOperator

with DAG(
    dag_id="ice_test_non_retryable",
    schedule=None,  # a manual run has no data interval, and no cron schedule to infer one from
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
) as ice_test_non_retryable:
    IceSessionAnalyticsOperator(task_id="analytics_without_interval", agent_ids="agent-nr")
    IceGenerateAIAgentCallOperator(
        task_id="call_with_refused_keys", agent_id="agent-nr", ice_conn_id="ice_refused"
    )
