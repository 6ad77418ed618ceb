"""Daily ICE session analytics, catch-up friendly: one partition per data interval, rerun-safe.

The run with logical date D covers the UTC day ``[D, D+1)`` (it runs once that day is over). It
lists every agent instance created in its data interval, downloads the finished ones'
call logs and commits ``<destination>/date=YYYY-MM-DD/``: ``sessions.jsonl`` and ``summary.json``
in a new version folder, switched in by ``_manifest.json`` (read it first), replacing the partition
atomically. Backfill past days with::

    airflow backfill create --dag-id ice_session_analytics \\
        --from-date 2026-01-01 --to-date 2026-01-07 --max-active-runs 3

Settings, all optional: ``ICE_AGENT_IDS`` (env, comma-separated) or the ``agent_ids`` param
(default ``demo-agent``); ``ICE_DATA_DIR`` (env) or the ``destination`` param (default
``$AIRFLOW_HOME/ice_data/sessions``); ``ICE_ANALYTICS_START_DATE`` (env, ISO date, UTC) for the
first interval (default 2026-11-01).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_ice._compat import CronDataIntervalTimetable
from airflow_provider_ice.operators.analytics import IceSessionAnalyticsOperator

DEFAULT_DESTINATION = os.path.join(
    os.environ.get("ICE_DATA_DIR")
    or os.path.join(os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ice_data"),
    "sessions",
)


# Fixed (never "now minus N days", which moves on every parse and confuses the scheduler).
START_DATE = datetime.fromisoformat(os.environ.get("ICE_ANALYTICS_START_DATE", "2026-11-01")).replace(
    tzinfo=timezone.utc
)


with DAG(
    dag_id="ice_session_analytics",
    description="Daily per-session metrics and summary of ICE AI agent calls",
    # Data-interval semantics: the run whose logical date is D covers [D, D+1 day) and writes
    # date=D, so `backfill create --from-date A --to-date B` fills exactly the partitions A..B.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=3,
    tags=["ice", "example", "analytics"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "agent_ids": Param(os.environ.get("ICE_AGENT_IDS", "demo-agent"), type="string", minLength=1),
        "destination": Param(DEFAULT_DESTINATION, type="string", minLength=1),
    },
) as dag:
    IceSessionAnalyticsOperator(
        task_id="session_analytics",
        agent_ids="{{ params.agent_ids }}",
        destination="{{ params.destination }}",
        concurrency=8,
    )
