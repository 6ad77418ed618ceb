"""Test-only DAGs for the campaign operator: a recipients file, an XCom list with phone calls, sync mode.

Each DAG takes its recipients (a file path) and results destination from params, retries its task
at once (``retry_delay=0``) and uses short intervals so that a campaign of a few dozen calls against
the emulator finishes in seconds.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_ice.operators.campaign import IceAgentCallCampaignOperator

AGENT_ID = "campaign-agent"
#: ``ICE_TEST_CAMPAIGN_WINDOW`` ("HH:MM:SS-HH:MM:SS") lets a test open the window when it wants.
WINDOW = os.environ.get("ICE_TEST_CAMPAIGN_WINDOW", "00:00-23:59")
DEFAULTS: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(0)}
FAST: dict[str, Any] = {
    "agent_id": AGENT_ID,
    "recipient_key": "id",
    "user_data_template": {"customer": "{{ id }}", "hello": "Hi {{ name }}"},
    "max_active_calls": 6,
    "calls_per_second": 100,
    "max_attempts": 2,
    "redial_after": 0.2,
    "timezone_field": "tz",
    "lookup_tolerance": 1.0,
    "poll_interval": 0.2,
    "destination": "{{ params.destination }}",
}


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        default_args=DEFAULTS,
        params={"recipients": "", "destination": "", "campaign": ""},
        tags=["ice", "test"],
    )


with _dag("ice_test_campaign_file") as ice_test_campaign_file:
    IceAgentCallCampaignOperator(
        task_id="campaign", recipients="{{ params.recipients }}", deferrable=True, **FAST
    )

with _dag("ice_test_campaign_sync") as ice_test_campaign_sync:
    IceAgentCallCampaignOperator(
        task_id="campaign", recipients="{{ params.recipients }}", deferrable=False, **FAST
    )

with _dag("ice_test_campaign_phone_xcom") as ice_test_campaign_phone_xcom:

    @task
    def people() -> list[dict[str, Any]]:
        numbers = [f"+86138{n:08d}" for n in range(8)] + ["not-a-number"]
        return [{"id": f"p{n}", "name": f"Person {n}", "phone": number} for n, number in enumerate(numbers)]

    IceAgentCallCampaignOperator(
        task_id="campaign",
        recipients=people(),
        call_type="phone",
        phone_field="phone",
        caller_number="+862150000000",
        deferrable=True,
        **FAST,
    )

with _dag("ice_test_campaign_slow") as ice_test_campaign_slow:
    # Paced slowly enough that a test can kill the worker while calls are being placed.
    IceAgentCallCampaignOperator(
        task_id="campaign",
        recipients="{{ params.recipients }}",
        # A run that replaces a killed one resumes the same campaign.
        campaign_id="{{ params.campaign }}",
        deferrable=False,
        **{**FAST, "calls_per_second": 8, "max_active_calls": 40},
    )

with _dag("ice_test_campaign_window") as ice_test_campaign_window:
    # The window opens a few seconds after the DAG file is parsed (in the recipients' time zone).
    IceAgentCallCampaignOperator(
        task_id="campaign",
        recipients="{{ params.recipients }}",
        calling_window=WINDOW,
        deferrable=True,
        **FAST,
    )

with _dag("ice_test_campaign_call_logs") as ice_test_campaign_call_logs:
    # Every Finished call's log is kept, next to the results.
    IceAgentCallCampaignOperator(
        task_id="campaign",
        recipients="{{ params.recipients }}",
        fetch_call_logs=True,
        call_log_destination="{{ params.destination }}/call_logs",
        deferrable=True,
        **FAST,
    )
