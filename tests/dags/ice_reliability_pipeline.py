"""Test-only twin of ``example_dags/ice_call_log_pipeline.py`` for the reliability suite.

The same operators and wiring, tuned for a local emulator: sub-second polls, short timeouts, and
Airflow task retries without delay (``dag.test()`` reschedules an ``up_for_retry`` task at once),
so tens of runs with injected faults fit in CI. Nothing here is specific to the tests except the
timings; ``tests/reliability`` drives it through ``dag.test()``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

DAG_ID = "ice_reliability_pipeline"
#: Airflow retries of every task; the suite counts a run as failed only when these are exhausted.
RETRIES = int(os.environ.get("ICE_RELIABILITY_RETRIES", "4"))
POLL = 0.1
#: Above the suite's listing lag (1 s), far below the 120 s default, so lost answers cost seconds.
LOOKUP_TOLERANCE = 5.0

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    default_args={"retries": RETRIES, "retry_delay": timedelta(0)},
    params={"agent_id": "reliability-agent", "destination": "/tmp/ice-reliability"},
    tags=["ice", "test"],
) as dag:
    place_call = IceGenerateAIAgentCallOperator(
        task_id="place_call",
        agent_id="{{ params.agent_id }}",
        user_data={"customer": "reliability", "dag_run": "{{ run_id }}"},
        poll_interval=POLL,
        lookup_tolerance=LOOKUP_TOLERANCE,
    )
    wait_for_call = IceAIAgentInstanceSensor(
        task_id="wait_for_call",
        call=place_call.output,
        deferrable=True,
        poke_interval=POLL,
        timeout=120,
        not_found_timeout=60,
    )
    fetch_call_log = IceFetchCallLogOperator(
        task_id="fetch_call_log",
        call=place_call.output,  # type: ignore[arg-type]  # an XComArg resolves to the dict at run time
        destination="{{ params.destination }}/",
        empty_url_poll_interval=POLL,
        empty_url_timeout=10,
        download_timeout=5,
    )

    @task
    def summarise_conversation(fetched: dict[str, Any]) -> dict[str, Any]:
        """Read the stored call log back and check it against the fetch task's own record."""
        import hashlib

        from airflow.providers.common.compat.sdk import ObjectStoragePath

        from airflow_provider_ice.api.call_log import parse_call_log

        raw = ObjectStoragePath(fetched["uri"]).read_bytes()
        if hashlib.sha256(raw).hexdigest() != fetched["sha256"]:
            raise ValueError(f"stored call log {fetched['uri']} does not match its recorded sha256")
        call_log = parse_call_log(raw)
        return {"uri": fetched["uri"], "turns": len(call_log.turns), "end_reason": call_log.end_reason}

    place_call >> wait_for_call >> fetch_call_log
    summarise_conversation(fetch_call_log.output)  # type: ignore[arg-type]
