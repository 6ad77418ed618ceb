"""Place an AI agent call, wait for it (deferrable), fetch its call log, and summarise the conversation.

Settings, all optional:

* ``ICE_AGENT_ID`` (env) or the ``agent_id`` param: the AIAgentId to call (default ``demo-agent``);
* ``ICE_DATA_DIR`` (env) or the ``destination`` param: where call logs go (default
  ``$AIRFLOW_HOME/ice_data``); files land in ``<destination>/call_logs/<date>/<ChannelId>.json``,
  ``<date>`` being the run's logical date, or the day it was triggered when it has none;
* the ``poke_interval`` param: seconds between the sensor's polls (default 5);
* the ``customer`` param: carried in UserData (templated) so the call log can be traced back.

The connection is ``ice_default`` (type ``alibaba_ice``); for a local run, point it at the emulator
(``airflow-ice-emulator`` prints the ``AIRFLOW_CONN_ICE_DEFAULT`` value to export).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

DEFAULT_DATA_DIR = os.environ.get("ICE_DATA_DIR") or os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ice_data"
)

with DAG(
    dag_id="ice_call_log_pipeline",
    description="Generate an ICE AI agent call, wait for it, fetch and summarise its call log",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=4,
    tags=["ice", "example"],
    params={
        "agent_id": Param(os.environ.get("ICE_AGENT_ID", "demo-agent"), type="string", minLength=1),
        "customer": Param("customer-001", type="string"),
        "destination": Param(DEFAULT_DATA_DIR, type="string", minLength=1),
        "poke_interval": Param(5, type="integer", minimum=1),
    },
) as dag:
    place_call = IceGenerateAIAgentCallOperator(
        task_id="place_call",
        agent_id="{{ params.agent_id }}",
        user_data={"customer": "{{ params.customer }}", "dag_run": "{{ run_id }}"},
    )

    wait_for_call = IceAIAgentInstanceSensor(
        task_id="wait_for_call",
        call=place_call.output,
        deferrable=True,
        poke_interval="{{ params.poke_interval }}",
        timeout=timedelta(hours=1).total_seconds(),
    )

    fetch_call_log = IceFetchCallLogOperator(
        task_id="fetch_call_log",
        call=place_call.output,
        # The run's date, with or without a logical date (`airflow dags trigger` gives none).
        destination="{{ params.destination }}/call_logs/"
        "{{ (dag_run.logical_date or dag_run.run_after) | ds }}/",
    )

    # One XCom for the whole summary: a dict return type would otherwise push one per key, and
    # Airflow 3.0 refuses to push a None one (apache/airflow#55062).
    @task(multiple_outputs=False)
    def summarise_conversation(fetched: dict[str, Any]) -> dict[str, Any]:
        """Read the stored call log back and summarise it (metrics plus the first and last words)."""
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from airflow_provider_ice.analytics.metrics import session_metrics
        from airflow_provider_ice.api.call_log import parse_call_log

        call_log = parse_call_log(ObjectStoragePath(fetched["uri"]).read_bytes())
        metrics = session_metrics(None, call_log, agent_id=fetched["agent_id"])
        said = [turn for turn in call_log.turns if turn.text]
        return {
            "uri": fetched["uri"],
            "channel_id": fetched["channel_id"],
            "duration_ms": metrics.duration_ms,
            "turns_by_role": metrics.turns_by_role,
            "interruptions": metrics.interruptions,
            "user_joined": metrics.user_joined,
            "first_response_latency_ms": metrics.first_response_latency_ms,
            "average_response_latency_ms": metrics.average_response_latency_ms,
            "end_reason": call_log.end_reason,
            "opening": said[0].text[:200] if said else None,
            "closing": said[-1].text[:200] if said else None,
        }

    place_call >> wait_for_call >> fetch_call_log
    summarise_conversation(fetch_call_log.output)
