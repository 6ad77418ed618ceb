"""Every weekday morning, call each recipient with an ICE AI agent, wait (deferred) and summarise.

* One mapped call task per recipient (``.partial(...).expand(user_data=...)``): each map index
  has its own correlation id, so retries and lost responses never call a person twice.
* One mapped deferrable sensor per call: no worker slot is held while people talk.
* A summary task that runs whatever happened to the calls (``trigger_rule="all_done"``).

Settings: the ``agent_id`` and ``recipients`` params (a list of objects carried as UserData), or
the ``ICE_AGENT_ID`` env variable; ``ICE_POKE_INTERVAL`` (seconds, default 30) sets how often the
triggerer polls ListAIAgentInstance. The connection is ``ice_default`` (type ``alibaba_ice``).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

POKE_INTERVAL = float(os.environ.get("ICE_POKE_INTERVAL", "30"))

with DAG(
    dag_id="ice_scheduled_agent_calls",
    description="Scheduled AI agent calls, one per recipient, waited for in the triggerer",
    schedule="0 9 * * 1-5",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["ice", "example"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "agent_id": Param(os.environ.get("ICE_AGENT_ID", "demo-agent"), type="string", minLength=1),
        "recipients": Param(
            [{"name": "Ann", "topic": "delivery"}, {"name": "Bo", "topic": "renewal"}],
            type="array",
            items={"type": "object"},
            description="One call per entry; each entry is sent as the call's UserData.",
        ),
    },
) as dag:

    @task
    def recipients(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The recipients as UserData objects, tagged with the DAG run for tracing."""
        entries = list((params or {}).get("recipients") or [])
        return [{**entry, "campaign": "scheduled"} for entry in entries]

    calls = IceGenerateAIAgentCallOperator.partial(
        task_id="call",
        agent_id="{{ params.agent_id }}",
    ).expand(user_data=recipients())

    waits = IceAIAgentInstanceSensor.partial(
        task_id="wait",
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=timedelta(hours=2).total_seconds(),
        not_found_timeout=timedelta(minutes=10).total_seconds(),
    ).expand(call=calls.output)

    @task(trigger_rule="all_done")
    def summarise(outcomes: list[dict[str, Any] | None]) -> dict[str, Any]:
        """Counts by status; a call whose wait failed or was skipped counts as ``unknown``."""
        statuses: Counter[str] = Counter((outcome or {}).get("status") or "unknown" for outcome in outcomes)
        with_log = sum(1 for outcome in outcomes if outcome and outcome.get("call_log_available"))
        return {"calls": len(outcomes), "by_status": dict(statuses), "with_call_log": with_log}

    summarise(waits.output)
