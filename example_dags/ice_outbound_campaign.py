"""An outbound campaign from a recipients file: every person called once, redialed if they never joined.

One task instance places and follows all the calls (no task per recipient, no ``max_map_length``
limit). The recipients are a CSV (or JSONL) file at any ``ObjectStoragePath``; each row has a
``customer_id`` (the key), a ``name``, an ``appointment`` and a ``tz`` (IANA time zone) field, and
the UserData of each call is rendered from them. Calls go out at most ``max_active_calls`` at a time
and ``calls_per_second``, only between 09:00 and 20:00 in each recipient's time zone (the task
defers until the window opens), and people who never joined are called again after
``redial_after``, up to three calls. Results land in
``<destination>/dag_id=ice_outbound_campaign/task_id=campaign/run_id=…/{results.jsonl,summary.json}``.

Settings, all optional: ``ICE_AGENT_ID`` (env) or the ``agent_id`` param (default ``demo-agent``);
``ICE_CAMPAIGN_RECIPIENTS`` (env) or the ``recipients`` param (a path or URI; default
``$ICE_DATA_DIR/campaign/recipients.csv``); ``ICE_CAMPAIGN_WINDOW`` (env, e.g. ``09:00-20:00``, or
``always``); ``ICE_CAMPAIGN_REDIAL_AFTER`` (env, seconds, default 900).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_ice.operators.campaign import IceAgentCallCampaignOperator

DATA_DIR = os.environ.get("ICE_DATA_DIR") or os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ice_data"
)
WINDOW = os.environ.get("ICE_CAMPAIGN_WINDOW", "09:00-20:00")

with DAG(
    dag_id="ice_outbound_campaign",
    description="Reminder calls to every customer in a file, within calling hours, with redials",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["ice", "example", "campaign"],
    # A retry resumes the campaign: calls already placed are adopted, nobody is called twice.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "agent_id": Param(os.environ.get("ICE_AGENT_ID", "demo-agent"), type="string", minLength=1),
        "recipients": Param(
            os.environ.get("ICE_CAMPAIGN_RECIPIENTS", os.path.join(DATA_DIR, "campaign", "recipients.csv")),
            type="string",
            minLength=1,
        ),
    },
) as dag:
    IceAgentCallCampaignOperator(
        task_id="campaign",
        agent_id="{{ params.agent_id }}",
        recipients="{{ params.recipients }}",
        recipient_key="customer_id",
        user_data_template={
            "customer": "{{ customer_id }}",
            "greeting": "Hello {{ name }}, this is a reminder of your appointment on {{ appointment }}.",
        },
        call_type="app",
        max_active_calls=int(os.environ.get("ICE_CAMPAIGN_MAX_ACTIVE", "100")),
        calls_per_second=float(os.environ.get("ICE_CAMPAIGN_CPS", "20")),
        calling_window=None if WINDOW == "always" else WINDOW,
        timezone_field="tz",
        max_attempts=3,
        redial_after=float(os.environ.get("ICE_CAMPAIGN_REDIAL_AFTER", "900")),
        poll_interval=float(os.environ.get("ICE_POKE_INTERVAL", "15")),
        deferrable=True,
        destination=os.path.join(DATA_DIR, "campaigns"),
    )
